package changefeed

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ambitmesh/ambit/pkg/devstack"
)

// TestPurgedStream: a consumer paused while events it has not read are
// purged from the stream notices the broken prev chain on the next event
// and re-lists to etcd's exact state.
func TestPurgedStream(t *testing.T) {
	s := startStack(t)
	cli := newEtcd(t, s)
	h := watchHistory(t, cli, 1)
	p := startPublisher(t, s, PublisherOptions{})
	c := startConsumer(t, s, ConsumerOptions{Name: "c", MaxPending: 4, CheckInterval: time.Hour})
	for i := range 10 {
		put(t, cli, ref(kindService, "default", fmt.Sprintf("a-%d", i)), `{}`)
	}
	converge(t, cli, 10*time.Second, c)

	gate := make(chan struct{})
	c.rec.setGate(gate)
	var last int64
	for i := range 40 {
		last = put(t, cli, ref(kindPod, "default", fmt.Sprintf("b-%d", i)), fmt.Sprintf(`{"i":%d}`, i))
	}
	eventually(t, 10*time.Second, "publisher caught up", func() bool { return p.Status().LastPosition.Revision >= last })
	purge(t, s)
	for i := range 5 {
		put(t, cli, ref(kindPod, "default", fmt.Sprintf("c-%d", i)), `{}`)
	}
	eventually(t, 10*time.Second, "publisher caught up", func() bool { return p.Status().LastPosition.Revision >= last+5 })
	c.rec.setGate(nil)
	close(gate)

	last = converge(t, cli, 20*time.Second, c)
	if st := c.Status(); st.Relists[RelistGap] == 0 {
		t.Errorf("relists = %v, want a gap", st.Relists)
	}
	checkHistory(t, h, last, c)
}

// checkHistory waits for the history to catch up with etcd and checks
// that each consumer applied exactly etcd's events since its last listing.
func checkHistory(t *testing.T, h *history, last int64, consumers ...*testConsumer) {
	t.Helper()
	eventually(t, 30*time.Second, "history complete", func() bool { return h.seen(last) })
	for _, c := range consumers {
		checkSequence(t, c, h)
	}
}

func purge(t *testing.T, s *devstack.Stack) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(newNATS(t, s))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatalf("purge: %v", err)
	}
}

// TestFreshNATSStore: NATS restarts with an empty store while writes go
// on. The leader finds an empty stream and publishes a resync marker;
// consumers, whose chain can no longer be continued, read the new stream
// from its start, meet the marker and re-list to etcd's exact state.
func TestFreshNATSStore(t *testing.T) {
	s := startStack(t)
	cli := newEtcd(t, s)
	h := watchHistory(t, cli, 1)
	startPublisher(t, s, PublisherOptions{})
	all := startConsumer(t, s, ConsumerOptions{Name: "all"})
	some := startConsumer(t, s, ConsumerOptions{Name: "some", Kinds: []GroupKind{kindService, kindPod}})
	for i := range 20 {
		put(t, cli, ref(kindService, "default", fmt.Sprintf("a-%d", i)), `{}`)
	}
	converge(t, cli, 10*time.Second, all, some)

	s.StopNATS()
	for i := range 20 {
		put(t, cli, ref(kindPod, "default", fmt.Sprintf("b-%d", i)), `{}`)
		put(t, cli, ref(kindService, "default", fmt.Sprintf("a-%d", i)), `{"v":2}`)
	}
	if err := s.StartNATS(true); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		put(t, cli, ref(kindPod, "default", fmt.Sprintf("c-%d", i)), `{}`)
	}
	last := converge(t, cli, 30*time.Second, all, some)
	for _, c := range []*testConsumer{all, some} {
		if st := c.Status(); st.Relists[RelistResync] == 0 {
			t.Errorf("%s relists = %v, want a resync", c.opts.Name, st.Relists)
		}
	}
	checkHistory(t, h, last, all, some)
}

// TestCompaction: etcd compacts past the position the next leader resumes
// from; it publishes a resync marker and consumers converge to etcd.
func TestCompaction(t *testing.T) {
	s := startStack(t)
	cli := newEtcd(t, s)
	h := watchHistory(t, cli, 1)
	first := startPublisher(t, s, PublisherOptions{})
	all := startConsumer(t, s, ConsumerOptions{Name: "all"})
	some := startConsumer(t, s, ConsumerOptions{Name: "some", Kinds: []GroupKind{kindService}})
	for i := range 10 {
		put(t, cli, ref(kindService, "default", fmt.Sprintf("a-%d", i)), `{}`)
	}
	converge(t, cli, 10*time.Second, all, some)

	// The leader goes away; meanwhile etcd moves on and compacts.
	if err := first.r.stop(t); err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := range 20 {
		put(t, cli, ref(kindService, "default", fmt.Sprintf("a-%d", i%5)), fmt.Sprintf(`{"v":%d}`, i))
		last = put(t, cli, ref(kindPod, "default", fmt.Sprintf("b-%d", i)), `{}`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Compact(ctx, last, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	startPublisher(t, s, PublisherOptions{})
	converge(t, cli, 20*time.Second, all, some)
	for _, c := range []*testConsumer{all, some} {
		if st := c.Status(); st.Relists[RelistResync] == 0 {
			t.Errorf("%s relists = %v, want a resync", c.opts.Name, st.Relists)
		}
	}
	var markers int
	for _, env := range streamEnvelopes(t, s) {
		if env.GetType().String() == "EVENT_TYPE_RESYNC" && env.GetPosition().GetRevision() >= last {
			markers++
		}
	}
	if markers != 1 {
		t.Errorf("%d resync markers at or after the compaction, want 1", markers)
	}
	put(t, cli, ref(kindService, "default", "after"), `{}`)
	last = converge(t, cli, 30*time.Second, all, some) // after a compaction consumers re-list with jitter; a loaded CI machine needs slack
	checkHistory(t, h, last, all, some)
}

// TestRestartsDuringWrites: etcd, then NATS restart while writes go on;
// afterwards every consumer's state equals etcd's.
func TestRestartsDuringWrites(t *testing.T) {
	s := startStack(t)
	cli := newEtcd(t, s)
	h := watchHistory(t, cli, 1)
	startPublisher(t, s, PublisherOptions{})
	startPublisher(t, s, PublisherOptions{})
	all := startConsumer(t, s, ConsumerOptions{Name: "all"})
	some := startConsumer(t, s, ConsumerOptions{Name: "some", Kinds: []GroupKind{kindService, kindServiceEntry}})
	eventually(t, 20*time.Second, "consumers synced", func() bool { return all.Status().Synced && some.Status().Synced })

	// Writers keep going and ride out the outages by retrying.
	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		kinds := []GroupKind{kindService, kindPod, kindServiceEntry}
		pace := time.NewTicker(time.Millisecond)
		defer pace.Stop()
		for i := 0; ctx.Err() == nil; i++ {
			select {
			case <-pace.C:
			case <-ctx.Done():
				return
			}
			wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, err := cli.Put(wctx, ref(kinds[i%3], "default", fmt.Sprintf("o-%d", i%50)), fmt.Sprintf(`{"i":%d}`, i))
			wcancel()
			if err != nil {
				failed.Add(1)
				continue
			}
			ok.Add(1)
		}
	}()
	defer func() { cancel(); <-done }()
	waitWrites := func(n int64) {
		t.Helper()
		from := ok.Load()
		eventually(t, 30*time.Second, fmt.Sprintf("%d more writes", n), func() bool { return ok.Load() >= from+n })
	}

	waitWrites(200)
	s.StopEtcd()
	eventually(t, 10*time.Second, "writes failing", func() bool { return failed.Load() >= 2 })
	if err := s.StartEtcd(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitWrites(200)
	s.StopNATS()
	waitWrites(100)
	if err := s.StartNATS(false); err != nil {
		t.Fatal(err)
	}
	waitWrites(200)
	cancel()
	<-done
	last := converge(t, cli, 30*time.Second, all, some)
	checkHistory(t, h, last, all, some)
	t.Logf("%d writes, %d failed; relists all=%v some=%v", ok.Load(), failed.Load(), all.Status().Relists, some.Status().Relists)
}
