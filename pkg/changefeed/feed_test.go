package changefeed

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	kindService      = GroupKind{Group: CoreGroup, Kind: "Service"}
	kindPod          = GroupKind{Group: CoreGroup, Kind: "Pod"}
	kindServiceEntry = GroupKind{Group: "networking.istio.io", Kind: "ServiceEntry"}
)

func ref(gk GroupKind, ns, name string) string {
	return ResourceRef{Group: gk.Group, Kind: gk.Kind, Namespace: ns, Name: name}.Key()
}

// TestFeedBasics: a snapshot, then puts, deletes and a multi-key
// transaction arrive in order at an all-kinds consumer and at one limited
// to some kinds, with (revision, index) positions.
func TestFeedBasics(t *testing.T) {
	s := startStack(t)
	cli := newEtcd(t, s)
	for i := range 7 {
		put(t, cli, ref(kindService, "default", fmt.Sprintf("before-%d", i)), `{"v":0}`)
		put(t, cli, ref(kindServiceEntry, "default", fmt.Sprintf("before-%d", i)), `{"v":0}`)
		put(t, cli, ref(kindPod, "default", fmt.Sprintf("before-%d", i)), `{"v":0}`)
	}
	startPublisher(t, s, PublisherOptions{})
	// Small pages: listings take several pages, all at one revision.
	all := startConsumer(t, s, ConsumerOptions{Name: "all", ListPageSize: 3})
	some := startConsumer(t, s, ConsumerOptions{Name: "some", ListPageSize: 2, Kinds: []GroupKind{kindService, kindServiceEntry}})
	eventually(t, 20*time.Second, "consumers synced", func() bool {
		return all.Status().Synced && some.Status().Synced
	})

	put(t, cli, ref(kindService, "default", "a"), `{"v":1}`)
	put(t, cli, ref(kindPod, "default", "p"), `{"v":1}`)
	put(t, cli, ref(kindServiceEntry, "istio-system", "se"), `{"v":1}`)
	ctx := context.Background()
	txn, err := cli.Txn(ctx).Then(
		clientv3.OpPut(ref(kindService, "default", "b"), `{"v":2}`),
		clientv3.OpPut(ref(kindPod, "default", "q"), `{"v":2}`),
		clientv3.OpDelete(ref(kindService, "default", "a")),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	put(t, cli, "/ambit/v1/res/core/Service/bad-key-too-short", `{}`)
	converge(t, cli, 20*time.Second, all, some)

	evs := all.rec.appliedEvents()
	var txnEvents []applied
	for _, e := range evs {
		if e.Pos.Revision == txn.Header.Revision {
			txnEvents = append(txnEvents, e)
		}
	}
	want := []applied{
		{Pos: Position{txn.Header.Revision, 0}, Type: EventPut, Key: ref(kindService, "default", "b"), Value: `{"v":2}`},
		{Pos: Position{txn.Header.Revision, 1}, Type: EventPut, Key: ref(kindPod, "default", "q"), Value: `{"v":2}`},
		{Pos: Position{txn.Header.Revision, 2}, Type: EventDelete, Key: ref(kindService, "default", "a"), Value: `{"v":1}`},
	}
	if fmt.Sprint(txnEvents) != fmt.Sprint(want) {
		t.Errorf("txn events = %v, want %v", txnEvents, want)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Pos.Compare(evs[i-1].Pos) <= 0 {
			t.Errorf("out of order: %v after %v", evs[i], evs[i-1])
		}
	}
	for _, e := range some.rec.appliedEvents() {
		if ref, _ := ParseKey(e.Key); ref.Kind == "Pod" {
			t.Errorf("consumer limited to Service and ServiceEntry got %v", e)
		}
	}
	for _, c := range []*testConsumer{all, some} {
		if st := c.Status(); st.Relists[RelistStart] != 1 || len(st.Relists) != 1 {
			t.Errorf("%s relists = %v, want one start", c.opts.Name, st.Relists)
		}
	}

	// A handler error makes the consumer re-list and Reset with the full
	// state again.
	bad := ref(kindService, "default", "refused")
	all.rec.mu.Lock()
	all.rec.failKey = bad
	resets := all.rec.resets
	all.rec.mu.Unlock()
	put(t, cli, bad, `{"v":3}`)
	converge(t, cli, 20*time.Second, all, some)
	if st := all.Status(); st.Relists[RelistHandler] != 1 {
		t.Errorf("relists = %v, want one after the handler error", st.Relists)
	}
	all.rec.mu.Lock()
	defer all.rec.mu.Unlock()
	if all.rec.resets != resets+1 {
		t.Errorf("resets %d → %d, want one more", resets, all.rec.resets)
	}
}

// TestGracefulHandover: a leader that stops cleanly revokes its lease, so
// the next candidate leads at once instead of after the session TTL.
func TestGracefulHandover(t *testing.T) {
	s := startStack(t)
	first := startPublisher(t, s, PublisherOptions{ID: "first", SessionTTL: 10 * time.Second})
	eventually(t, 10*time.Second, "first leads", first.IsLeader)
	second := startPublisher(t, s, PublisherOptions{ID: "second", SessionTTL: 10 * time.Second})
	stopped := time.Now()
	if err := first.r.stop(t); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "second leads", second.IsLeader)
	t.Logf("handover took %s", time.Since(stopped).Round(time.Millisecond))
	if first.IsLeader() {
		t.Error("stopped publisher still reports leading")
	}
}
