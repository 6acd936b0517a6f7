package server_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// fanoutRound is one change on its way to every stream.
type fanoutRound struct {
	name      string
	start     time.Time
	latencies []time.Duration
	remaining atomic.Int64
	done      chan struct{}
}

// BenchmarkFanout: N wildcard delta streams (in process, real TLS, 25
// streams per connection) over a mesh of 2,000 workloads; each op is one
// workload change that must reach every stream (measured until each
// stream's client received it; the clients ACK). Reports p50/p99 of
// change → received per stream. Debounce is off: this measures the
// server's fan-out, to which the production debounce (100 ms) adds.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) { benchmarkFanout(b, n, 2000) })
	}
}

func benchmarkFanout(b *testing.B, n, resources int) {
	h := newHarness(b, harnessOptions{})
	rs := workloads(resources)
	h.cache.Apply(1, upsert(addressType, rs...))
	conns := connect(b, h, max(1, n/25))

	var current atomic.Pointer[fanoutRound]
	ctx, cancel := context.WithCancel(context.Background())
	var readers, synced sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		readers.Add(1)
		synced.Add(1)
		go func() {
			defer readers.Done()
			stream, err := discovery.NewAggregatedDiscoveryServiceClient(conns[i%len(conns)]).DeltaAggregatedResources(ctx)
			if err != nil {
				errs <- err
				synced.Done()
				return
			}
			if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: ztunnelNode("n" + strconv.Itoa(i)), TypeUrl: addressType}); err != nil {
				errs <- err
				synced.Done()
				return
			}
			got := 0
			for {
				r, err := stream.Recv()
				if err != nil {
					if got < resources {
						errs <- err
						synced.Done()
					}
					return
				}
				now := time.Now()
				if got < resources {
					if got += len(r.GetResources()); got >= resources {
						synced.Done()
					}
				} else if round := current.Load(); round != nil {
					for _, x := range r.GetResources() {
						if x.GetName() == round.name {
							round.latencies[i] = now.Sub(round.start)
							if round.remaining.Add(-1) == 0 {
								close(round.done)
							}
						}
					}
				}
				if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: addressType, ResponseNonce: r.GetNonce()}); err != nil {
					return
				}
			}
		}()
	}
	synced.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}

	var all []time.Duration
	b.ResetTimer()
	for i := range b.N {
		r := rs[i%len(rs)]
		round := &fanoutRound{name: r.Name, latencies: make([]time.Duration, n), done: make(chan struct{})}
		round.remaining.Store(int64(n))
		current.Store(round)
		round.start = time.Now()
		h.cache.Apply(int64(2+i), upsert(addressType, res(r.Name, "v"+strconv.Itoa(i+2), r.Aliases...)))
		select {
		case <-round.done:
		case <-time.After(30 * time.Second):
			b.Fatalf("round %d: %d streams did not receive the change", i, round.remaining.Load())
		}
		all = append(all, round.latencies...)
	}
	b.StopTimer()
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	cancel()
	readers.Wait()
	h.cancel()
}
