package changefeed

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// applyClock is a Handler that notes when each revision was applied.
type applyClock struct {
	mu      sync.Mutex
	at      map[int64]time.Time
	last    int64
	advance chan struct{}
}

func newApplyClock() *applyClock {
	return &applyClock{at: map[int64]time.Time{}, advance: make(chan struct{}, 1)}
}

func (a *applyClock) Reset(context.Context, Snapshot) error { return nil }

func (a *applyClock) Apply(_ context.Context, ev Event) error {
	now := time.Now()
	a.mu.Lock()
	a.at[ev.Position.Revision] = now
	a.last = ev.Position.Revision
	a.mu.Unlock()
	select {
	case a.advance <- struct{}{}:
	default:
	}
	return nil
}

// waitFor blocks until revision rev was applied and returns when.
func (a *applyClock) waitFor(b *testing.B, rev int64) time.Time {
	deadline := time.After(30 * time.Second)
	for {
		a.mu.Lock()
		t, ok := a.at[rev]
		last := a.last
		a.mu.Unlock()
		if ok {
			return t
		}
		if last > rev {
			b.Fatalf("revision %d skipped (at %d)", rev, last)
		}
		select {
		case <-a.advance:
		case <-deadline:
			b.Fatalf("revision %d not applied within 30s (at %d)", rev, last)
		}
	}
}

// BenchmarkPutToApply measures the feed end to end against real embedded
// etcd and NATS: from the start of an etcd put to the consumer's Apply of
// that revision, through the elected publisher and the stream.
//
//	serial:      one put at a time, each waited for: latency, no concurrency.
//	rate=2000/s: 8 writers paced to 2000 puts/s: latency under steady load.
//	writers=16:  16 unpaced writers: throughput (latency is then queueing).
func BenchmarkPutToApply(b *testing.B) {
	s := startStack(b)
	cli := newEtcd(b, s)
	startPublisher(b, s, PublisherOptions{SessionTTL: 5 * time.Second})
	clock := newApplyClock()
	c, err := NewConsumer(ConsumerOptions{Etcd: newEtcd(b, s), NATS: newNATS(b, s), Handler: clock, Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	r := run(c.Run)
	b.Cleanup(func() { _ = r.stop(b) })
	deadline := time.Now().Add(30 * time.Second)
	for !c.Status().Synced {
		if time.Now().After(deadline) {
			b.Fatal("consumer not synced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	value := []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"x","namespace":"default"},"spec":{"ports":[{"port":80}]}}`)

	b.Run("serial", func(b *testing.B) {
		ctx := context.Background()
		lat := make([]time.Duration, 0, b.N)
		start := time.Now()
		for i := 0; b.Loop(); i++ {
			t0 := time.Now()
			resp, err := cli.Put(ctx, ref(kindService, "default", fmt.Sprintf("s-%d", i%1000)), string(value))
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, clock.waitFor(b, resp.Header.Revision).Sub(t0))
		}
		report(b, lat, time.Since(start))
	})

	concurrent := func(writers, rate int) func(b *testing.B) {
		return func(b *testing.B) {
			ctx := context.Background()
			type sent struct {
				rev int64
				t0  time.Time
			}
			var mu sync.Mutex
			var all []sent
			work := make(chan int)
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for range writers {
				wg.Go(func() {
					for i := range work {
						t0 := time.Now()
						resp, err := cli.Put(ctx, ref(kindPod, "default", fmt.Sprintf("p-%d", i%1000)), string(value))
						if err != nil {
							errs <- err
							return
						}
						mu.Lock()
						all = append(all, sent{resp.Header.Revision, t0})
						mu.Unlock()
					}
				})
			}
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				if rate > 0 {
					// Open-loop pacing on an absolute schedule, so that a
					// slow put delays no later one.
					time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
				}
				work <- i
			}
			close(work)
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			maxRev := int64(0)
			for _, s := range all {
				maxRev = max(maxRev, s.rev)
			}
			clock.waitFor(b, maxRev)
			elapsed := time.Since(start)
			lat := make([]time.Duration, 0, len(all))
			for _, s := range all {
				lat = append(lat, clock.waitFor(b, s.rev).Sub(s.t0))
			}
			report(b, lat, elapsed)
		}
	}
	// Steady load below the feed's capacity: latency without a backlog.
	b.Run("rate=2000/s", concurrent(8, 2000))
	// As fast as 16 writers go: the feed's throughput; latency then
	// measures the queue that builds while etcd accepts writes faster than
	// the feed publishes them.
	b.Run("writers=16", concurrent(16, 0))
}

func report(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "events/s")
}
