package changefeed

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/ambitmesh/ambit/pkg/devstack"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Started once per process by the etcd server and gRPC libraries.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

// testLogger logs to stderr with CHANGEFEED_TEST_LOG=debug|info, else
// discards.
func testLogger() *slog.Logger {
	switch os.Getenv("CHANGEFEED_TEST_LOG") {
	case "debug":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	case "info":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

func startStack(t testing.TB) *devstack.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatalf("start devstack: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop devstack: %v", err)
		}
	})
	return s
}

func newEtcd(t testing.TB, s *devstack.Stack) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   s.EtcdEndpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newNATS(t testing.TB, s *devstack.Stack) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.NATSURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectJitter(10*time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// runner runs f in a goroutine until stop; stop waits for it.
type runner struct {
	cancel context.CancelFunc
	done   chan error
}

func run(f func(ctx context.Context) error) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f(ctx) }()
	return r
}

// stop cancels f and waits for it, returning its error.
func (r *runner) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("did not stop within 30s")
		return nil
	}
}

// testPublisher is a publisher with its own etcd and NATS connections, so
// that it can be killed.
type testPublisher struct {
	*Publisher
	cli *clientv3.Client
	nc  *nats.Conn
	r   *runner
}

func startPublisher(t testing.TB, s *devstack.Stack, opts PublisherOptions) *testPublisher {
	t.Helper()
	tp := &testPublisher{cli: newEtcd(t, s), nc: newNATS(t, s)}
	opts.Etcd, opts.NATS = tp.cli, tp.nc
	if opts.SessionTTL == 0 {
		opts.SessionTTL = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = time.Second
	}
	if opts.PublishTimeout == 0 {
		// A request lost with a dying NATS connection costs one timeout.
		opts.PublishTimeout = 2 * time.Second
	}
	p, err := NewPublisher(opts)
	if err != nil {
		t.Fatalf("new publisher: %v", err)
	}
	tp.Publisher = p
	tp.r = run(p.Run)
	t.Cleanup(func() { _ = tp.r.stop(t) })
	return tp
}

// kill stops the publisher abruptly: its etcd client is closed without
// resigning (the lease stays until it expires) and its NATS connection is
// dropped.
func (tp *testPublisher) kill(t testing.TB) {
	t.Helper()
	tp.cli.Close()
	tp.nc.Close()
	_ = tp.r.stop(t)
}

// applied is one event as a handler saw it.
type applied struct {
	Pos   Position
	Type  EventType
	Key   string
	Value string
}

func (a applied) String() string { return fmt.Sprintf("%s %s %s", a.Pos, a.Type, a.Key) }

// recorder is a Handler that keeps the state and the applied events.
type recorder struct {
	mu      sync.Mutex
	state   map[string]Object
	events  []applied // since the last reset
	resets  int
	lastRev int64
	// gate, when set, is waited on before each Apply (to pause a consumer).
	gate chan struct{}
	// onApply, when set, is called after each Apply with the event.
	onApply func(ctx context.Context, ev Event)
	// failKey, when set, makes the first Apply of that key fail.
	failKey string
}

func newRecorder() *recorder { return &recorder{state: map[string]Object{}} }

func (r *recorder) Reset(_ context.Context, snap Snapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = map[string]Object{}
	for _, o := range snap.Objects {
		r.state[o.Ref.Key()] = o
	}
	r.events = nil
	r.resets++
	r.lastRev = snap.Revision
	return nil
}

func (r *recorder) Apply(ctx context.Context, ev Event) error {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	key := ev.Object.Ref.Key()
	if r.failKey != "" && key == r.failKey {
		r.failKey = ""
		r.mu.Unlock()
		return fmt.Errorf("test: refusing %s once", key)
	}
	switch ev.Type {
	case EventPut:
		r.state[key] = ev.Object
	case EventDelete:
		delete(r.state, key)
	}
	r.events = append(r.events, applied{Pos: ev.Position, Type: ev.Type, Key: key, Value: string(ev.Object.Value)})
	r.lastRev = ev.Position.Revision
	onApply := r.onApply
	r.mu.Unlock()
	if onApply != nil {
		onApply(ctx, ev)
	}
	return nil
}

func (r *recorder) setGate(g chan struct{}) {
	r.mu.Lock()
	r.gate = g
	r.mu.Unlock()
}

// snapshot returns key → value of the state.
func (r *recorder) snapshot() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.state))
	for k, o := range r.state {
		out[k] = string(o.Value)
	}
	return out
}

func (r *recorder) appliedEvents() []applied {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) has(key, value string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.state[key]
	return ok && string(o.Value) == value
}

type testConsumer struct {
	*Consumer
	rec *recorder
	r   *runner
}

func startConsumer(t testing.TB, s *devstack.Stack, opts ConsumerOptions) *testConsumer {
	t.Helper()
	tc := &testConsumer{rec: newRecorder()}
	if opts.Etcd == nil {
		opts.Etcd = newEtcd(t, s)
	}
	opts.NATS = newNATS(t, s)
	opts.Handler = tc.rec
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = time.Second
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = time.Second
	}
	if opts.RelistJitter == 0 {
		opts.RelistJitter = 100 * time.Millisecond
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = time.Second
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 2 * time.Second
	}
	c, err := NewConsumer(opts)
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	tc.Consumer = c
	tc.r = run(c.Run)
	t.Cleanup(func() {
		if err := tc.r.stop(t); err != nil {
			t.Errorf("consumer %s: %v", tc.opts.Name, err)
		}
	})
	return tc
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// etcdState lists the resource prefix: key → value, and the revision.
func etcdState(t testing.TB, cli *clientv3.Client, kinds ...GroupKind) (map[string]string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, ResourcePrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("list etcd: %v", err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		ref, err := ParseKey(string(kv.Key))
		if err != nil {
			continue
		}
		if len(kinds) > 0 && !slices.Contains(kinds, ref.GroupKind()) {
			continue
		}
		out[string(kv.Key)] = string(kv.Value)
	}
	return out, resp.Header.Revision
}

// put writes one key and returns the revision.
func put(t testing.TB, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, key, value)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

// sentinelKind is written by converge; consumers limited to some kinds
// must include it.
var sentinelKind = GroupKind{Group: CoreGroup, Kind: "Service"}

// converge writes a sentinel and waits until every consumer applied it,
// then checks each consumer's state equals etcd's (for its kinds).
func converge(t testing.TB, cli *clientv3.Client, timeout time.Duration, consumers ...*testConsumer) int64 {
	t.Helper()
	key := ResourceRef{Group: sentinelKind.Group, Kind: sentinelKind.Kind, Namespace: "sentinel", Name: "s"}.Key()
	val := fmt.Sprintf(`{"t":%d}`, time.Now().UnixNano())
	rev := put(t, cli, key, val)
	for _, c := range consumers {
		deadline := time.Now().Add(timeout)
		for c.LastAppliedRevision() < rev {
			if time.Now().After(deadline) {
				// CHANGEFEED_TEST_STACKS=<file> dumps every goroutine on a stall.
				if f := os.Getenv("CHANGEFEED_TEST_STACKS"); f != "" {
					buf := make([]byte, 1<<22)
					_ = os.WriteFile(f, buf[:runtime.Stack(buf, true)], 0o644)
				}
				t.Fatalf("timed out after %s waiting for %s to apply revision %d: %+v", timeout, c.opts.Name, rev, c.Status())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	want, _ := etcdState(t, cli)
	for _, c := range consumers {
		w := want
		if len(c.opts.Kinds) > 0 {
			w, _ = etcdState(t, cli, c.opts.Kinds...)
		}
		got := c.rec.snapshot()
		if !maps.Equal(got, w) {
			t.Errorf("%s: state differs from etcd: %d keys vs %d; %s", c.opts.Name, len(got), len(w), diff(got, w))
		}
	}
	return rev
}

func diff(got, want map[string]string) string {
	var out []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			out = append(out, "missing "+k)
		} else if g != v {
			out = append(out, "stale "+k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, "extra "+k)
		}
	}
	slices.Sort(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... %d more", len(out)-10))
	}
	return fmt.Sprint(out)
}
