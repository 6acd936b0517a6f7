package devstack_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/ambitmesh/ambit/pkg/devstack"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakOptions()...)
}

// leakOptions ignores goroutines that the etcd server and gRPC libraries
// start once per process and never stop; everything a Stack starts must be
// gone after Stop.
func leakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	}
}

func startStack(t *testing.T) *devstack.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatalf("start devstack: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

func etcdClient(t *testing.T, s *devstack.Stack) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: s.EtcdEndpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func natsConn(t *testing.T, s *devstack.Stack) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.NATSURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func putGet(t *testing.T, c *clientv3.Client, key, val string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, key, val); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	resp, err := c.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != val {
		t.Fatalf("get %s = %v, want %q", key, resp.Kvs, val)
	}
}

func publishConsume(t *testing.T, js jetstream.JetStream, subject, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := js.Publish(ctx, subject, []byte(payload))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	cons, err := js.OrderedConsumer(ctx, "TEST", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    ack.Sequence,
	})
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	if string(msg.Data()) != payload {
		t.Fatalf("consumed %q, want %q", msg.Data(), payload)
	}
}

func createStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "TEST", Subjects: []string{"test.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
}

func TestStackServesEtcdAndJetStream(t *testing.T) {
	s := startStack(t)
	putGet(t, etcdClient(t, s), "/k", "v")
	js, err := jetstream.New(natsConn(t, s))
	if err != nil {
		t.Fatal(err)
	}
	createStream(t, js)
	publishConsume(t, js, "test.a", "hello")
}

func TestEtcdStopStartKeepsDataAndAddress(t *testing.T) {
	s := startStack(t)
	c := etcdClient(t, s)
	putGet(t, c, "/before", "1")
	before := s.EtcdEndpoints()

	s.StopEtcd()
	if s.EtcdRunning() {
		t.Fatal("etcd still reported running after StopEtcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := c.Put(ctx, "/during", "x")
	cancel()
	if err == nil {
		t.Fatal("put succeeded while etcd was stopped")
	}

	if err := s.StartEtcd(context.Background()); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	if got := s.EtcdEndpoints(); got[0] != before[0] {
		t.Fatalf("endpoint changed across restart: %v -> %v", before, got)
	}
	// The same client reconnects and sees the data written before the stop.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, "/before")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "1" {
		t.Fatalf("after restart get /before = %v, %v", resp, err)
	}
	putGet(t, c, "/after", "2")
}

func TestNATSStopStartKeepsStreams(t *testing.T) {
	s := startStack(t)
	nc := natsConn(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	createStream(t, js)
	publishConsume(t, js, "test.a", "one")
	url := s.NATSURL()

	s.StopNATS()
	if s.NATSRunning() {
		t.Fatal("nats still reported running after StopNATS")
	}
	if err := s.StartNATS(false); err != nil {
		t.Fatalf("restart nats: %v", err)
	}
	if s.NATSURL() != url {
		t.Fatalf("url changed across restart: %s -> %s", url, s.NATSURL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The reconnecting client sees the stream and its message again.
	var info *jetstream.StreamInfo
	for {
		st, err := js.Stream(ctx, "TEST")
		if err == nil {
			info, err = st.Info(ctx)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream after restart: %v", err)
		}
		waitReconnect(ctx, nc)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages after restart, want 1", info.State.Msgs)
	}
	publishConsume(t, js, "test.b", "two")
}

func TestNATSFreshStoreDropsStreams(t *testing.T) {
	s := startStack(t)
	nc := natsConn(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	createStream(t, js)
	publishConsume(t, js, "test.a", "one")

	if err := s.StartNATS(true); err == nil {
		t.Fatal("wiping the store of a running server succeeded")
	}
	s.StopNATS()
	if err := s.StartNATS(true); err != nil {
		t.Fatalf("restart nats with fresh store: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := js.Stream(ctx, "TEST")
		if err != nil && err.Error() == jetstream.ErrStreamNotFound.Error() {
			break
		}
		if err == nil {
			t.Fatal("stream survived a fresh store")
		}
		if ctx.Err() != nil {
			t.Fatalf("waiting for stream-not-found: %v", err)
		}
		waitReconnect(ctx, nc)
	}
}

func TestGivenDirIsKept(t *testing.T) {
	dir := t.TempDir()
	s, err := devstack.Start(context.Background(), devstack.Options{Dir: dir, Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if _, err := os.Stat(dir + "/etcd"); err != nil {
		t.Fatalf("etcd data removed from a caller-owned dir: %v", err)
	}
}

// waitReconnect blocks until the connection is connected again or ctx ends.
func waitReconnect(ctx context.Context, nc *nats.Conn) {
	if nc.IsConnected() {
		return
	}
	ch := make(chan struct{}, 1)
	nc.SetReconnectHandler(func(*nats.Conn) {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	defer nc.SetReconnectHandler(nil)
	if nc.IsConnected() {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}
