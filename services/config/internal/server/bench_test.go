package server_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/devstack"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
	"github.com/ambitmesh/ambit/services/config/internal/server"
	"github.com/ambitmesh/ambit/services/config/internal/store"
)

// benchWorld is the config API over loopback gRPC (plaintext: the figure is
// about validation and storage, not TLS), with the change-feed publisher
// running and a consumer timing when each applied object arrives.
type benchWorld struct {
	client configv1.ConfigServiceClient
	mu     sync.Mutex
	sent   map[string]time.Time
	lat    []time.Duration
	seen   chan struct{}
}

// Reset: objects that arrive in a listing (the consumer started or
// re-listed after they were written) count as arrived, without a sample.
func (w *benchWorld) Reset(_ context.Context, snap changefeed.Snapshot) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range snap.Objects {
		delete(w.sent, o.Ref.Name)
	}
	w.signalIfDone()
	return nil
}

func (w *benchWorld) signalIfDone() {
	if len(w.sent) == 0 {
		select {
		case w.seen <- struct{}{}:
		default:
		}
	}
}

func (w *benchWorld) Apply(_ context.Context, ev changefeed.Event) error {
	now := time.Now()
	w.mu.Lock()
	if t, ok := w.sent[ev.Object.Ref.Name]; ok {
		w.lat = append(w.lat, now.Sub(t))
		delete(w.sent, ev.Object.Ref.Name)
		w.signalIfDone()
	}
	w.mu.Unlock()
	return nil
}

func newBenchWorld(b *testing.B) *benchWorld {
	ctx := context.Background()
	stack, err := devstack.Start(ctx, devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stack.Stop() })
	etcd, err := clientv3.New(clientv3.Config{Endpoints: stack.EtcdEndpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { etcd.Close() })
	nc, err := nats.Connect(stack.NATSURL(), nats.MaxReconnects(-1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	st, _ := store.New(store.Options{Etcd: etcd})
	api, err := server.New(server.Options{Store: st, InsecureLoopback: true})
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	configv1.RegisterConfigServiceServer(srv, api)
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(lis)
	b.Cleanup(srv.Stop)

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	pub, err := changefeed.NewPublisher(changefeed.PublisherOptions{Etcd: etcd, NATS: nc, SessionTTL: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	w := &benchWorld{sent: map[string]time.Time{}, seen: make(chan struct{}, 1)}
	cons, err := changefeed.NewConsumer(changefeed.ConsumerOptions{Etcd: etcd, NATS: nc, Handler: w,
		Kinds: []changefeed.GroupKind{{Group: "core", Kind: "Service"}}})
	if err != nil {
		b.Fatal(err)
	}
	wg.Add(2)
	go func() { defer wg.Done(); pub.Run(runCtx) }()
	go func() { defer wg.Done(); cons.Run(runCtx) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	w.client = configv1.NewConfigServiceClient(conn)
	if _, err := w.client.Apply(ctx, &configv1.ApplyRequest{Manifest: []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n")}); err != nil {
		b.Fatal(err)
	}
	return w
}

// BenchmarkApply measures validated applies (create of a Service with a
// cluster IP allocation, one etcd transaction each) through the gRPC API,
// and the time from an apply's return to its arrival at a change-feed
// consumer.
func BenchmarkApply(b *testing.B) {
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			w := newBenchWorld(b)
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						name := fmt.Sprintf("svc-%d", i)
						m := fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: bench}\nspec: {ports: [{port: 80}]}\n", name)
						// Latency counts from the start of the apply call.
						w.mu.Lock()
						w.sent[name] = time.Now()
						w.mu.Unlock()
						if _, err := w.client.Apply(context.Background(), &configv1.ApplyRequest{Manifest: []byte(m)}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			select {
			case <-w.seen:
			case <-time.After(30 * time.Second):
				b.Fatalf("%d applies never reached the feed", len(w.sent))
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "applies/s")
			w.mu.Lock()
			lat := slices.Clone(w.lat)
			w.mu.Unlock()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "feed-p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "feed-p99-ms")
			}
		})
	}
}
