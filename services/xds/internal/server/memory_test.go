package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

// workloads builds n resources shaped like workload addresses (a uid
// name, an IP alias, a ~150-byte body).
func workloads(n int) []*snapshot.Resource {
	rs := make([]*snapshot.Resource, n)
	for i := range rs {
		rs[i] = res(fmt.Sprintf("Kubernetes//Pod/ns-%d/workload-%06d-abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789", i%50, i),
			"v1-0123456789abcdef", fmt.Sprintf("network/10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
	}
	return rs
}

// memoryStats is the process's heap and goroutine stack use.
type memoryStats struct{ heap, stack uint64 }

func measure() memoryStats {
	// Twice: the first cycle moves pooled buffers to the victim cache, the
	// second frees them.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memoryStats{heap: ms.HeapAlloc, stack: ms.StackInuse}
}

// syncedStreams opens n wildcard delta streams spread over conns
// connections, reads each one's full state, ACKs it, and leaves it open
// with nothing reading (so the client side holds no goroutine per stream).
func syncedStreams(t testing.TB, conns []*grpc.ClientConn, n, want int) (closeAll func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			node := "n" + strconv.Itoa(i)
			stream, err := discovery.NewAggregatedDiscoveryServiceClient(conns[i%len(conns)]).DeltaAggregatedResources(ctx)
			if err != nil {
				errs <- err
				return
			}
			if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: ztunnelNode(node), TypeUrl: addressType}); err != nil {
				errs <- err
				return
			}
			got := 0
			for got < want {
				r, err := stream.Recv()
				if err != nil {
					errs <- err
					return
				}
				got += len(r.GetResources())
				if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: addressType, ResponseNonce: r.GetNonce()}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		cancel()
		t.Fatal(err)
	}
	return cancel
}

// connect dials k connections as the gateway controller (which may open
// streams for any node) and waits until they are ready, so that their
// buffers are in the baseline.
func connect(t testing.TB, h *harness, k int) []*grpc.ClientConn {
	t.Helper()
	conns := make([]*grpc.ClientConn, k)
	for i := range conns {
		conns[i] = h.dial(t, gatewayIdentity(t))
		conns[i].Connect()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		for s := conns[i].GetState(); s != connectivity.Ready; s = conns[i].GetState() {
			if !conns[i].WaitForStateChange(ctx, s) {
				cancel()
				t.Fatalf("connection %d not ready: %v", i, s)
			}
		}
		cancel()
	}
	return conns
}

// perStream measures the heap and stacks that n synced wildcard streams
// add, per stream, with the cache holding `resources` workloads. The
// figure includes the client side of each stream (same process), so it
// over-states the server's share.
func perStream(t testing.TB, resources, n int) memoryStats {
	h := newHarness(t, harnessOptions{})
	h.cache.Apply(1, upsert(addressType, workloads(resources)...))
	// About 25 streams per connection: what is measured is the stream,
	// not the connection's buffers.
	conns := connect(t, h, max(1, n/25))
	before := measure()
	closeAll := syncedStreams(t, conns, n, resources)
	waitFor(t, "every stream acked", func() error {
		ps := h.srv.Proxies()
		if len(ps) != n {
			return fmt.Errorf("%d proxies", len(ps))
		}
		for _, p := range ps {
			if p.AckedRevision != 1 {
				return fmt.Errorf("%s at %d", p.ID, p.AckedRevision)
			}
		}
		return nil
	})
	after := measure()
	if dir := os.Getenv("XDS_MEMORY_PROFILE_DIR"); dir != "" {
		if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%d-%d.pprof", resources, n))); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	closeAll()
	h.cancel()
	return memoryStats{
		heap:  (after.heap - min(before.heap, after.heap)) / uint64(n),
		stack: (after.stack - min(before.stack, after.stack)) / uint64(n),
	}
}

// TestMemoryPerStreamIsFlat: per-stream memory must not grow with the
// number of resources (no per-stream copy of names), and stays within
// CP-2's 50 KB.
func TestMemoryPerStreamIsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement skipped in -short mode")
	}
	streams := 200
	if raceEnabled {
		streams = 40
	}
	if s, err := strconv.Atoi(os.Getenv("XDS_MEMORY_STREAMS")); err == nil && s > 0 {
		streams = s
	}
	small := perStream(t, 1000, streams)
	large := perStream(t, 20000, streams)
	t.Logf("per wildcard stream (client side included), %d streams: 1k resources: heap %d B, stacks %d B; 20k resources: heap %d B, stacks %d B",
		streams, small.heap, small.stack, large.heap, large.stack)
	const limit = 50 << 10
	if large.heap+large.stack > limit || small.heap+small.stack > limit {
		// The race detector doubles goroutine stacks; hold it to the heap.
		if !raceEnabled || large.heap > limit || small.heap > limit {
			t.Fatalf("per-stream memory above %d B", limit)
		}
	}
	// "Flat": 20x the resources may not cost more than a quarter more per
	// stream (plus measurement noise of 2 KB).
	if float64(large.heap) > float64(small.heap)*1.25+2048 {
		t.Fatalf("per-stream heap grows with resources: %d B at 1k, %d B at 20k", small.heap, large.heap)
	}
}
