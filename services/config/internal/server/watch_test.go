package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
	"github.com/ambitmesh/ambit/services/config/internal/store"
	"github.com/ambitmesh/ambit/services/config/internal/watchhub"
)

// feedRig runs the change feed as config replicas do: publishers (leader
// candidates), each on its own connections so a test can kill one, and a
// consumer feeding the watch hub that serves Watch.
type feedRig struct {
	t     *testing.T
	stack *devstack.Stack
	hub   *watchhub.Hub
	cons  *changefeed.Consumer
	pubs  []*rigPublisher
}

type rigPublisher struct {
	*changefeed.Publisher
	etcd   *clientv3.Client
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *feedRig) etcdClient() *clientv3.Client {
	r.t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: r.stack.EtcdEndpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

func (r *feedRig) natsConn() *nats.Conn {
	r.t.Helper()
	nc, err := nats.Connect(r.stack.NATSURL(), nats.MaxReconnects(-1))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(nc.Close)
	return nc
}

// goRun runs f until the test ends.
func goRun(t *testing.T, f func(context.Context) error) (context.CancelFunc, chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel, done
}

// startFeed starts the publishers, waits until one leads and has
// published (so the consumer starts after the first leader's resync marker
// and never re-lists because of it), then the consumer, and returns once
// the hub holds its first snapshot.
func startFeed(t *testing.T, stack *devstack.Stack, st *store.Store, publishers int, o watchhub.Options) *feedRig {
	t.Helper()
	r := &feedRig{t: t, stack: stack}
	for i := range publishers {
		p := &rigPublisher{etcd: r.etcdClient(), nc: r.natsConn()}
		pub, err := changefeed.NewPublisher(changefeed.PublisherOptions{
			Etcd: p.etcd, NATS: p.nc, ID: fmt.Sprint("config-", i), SessionTTL: 2 * time.Second, RetryMax: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		p.Publisher = pub
		p.cancel, p.done = goRun(t, pub.Run)
		r.pubs = append(r.pubs, p)
	}
	r.waitLeader(-1)
	o.Render = watchhub.StoreRender(st)
	hub, err := watchhub.New(o)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := changefeed.NewConsumer(changefeed.ConsumerOptions{Etcd: r.etcdClient(), NATS: r.natsConn(), Handler: hub, Name: "config-watch"})
	if err != nil {
		t.Fatal(err)
	}
	r.hub, r.cons = hub, cons
	goRun(t, func(ctx context.Context) error { defer hub.Close(); return cons.Run(ctx) })
	select {
	case <-hub.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("watch hub did not sync")
	}
	return r
}

// waitLeader returns the index of the publisher that leads and has
// published, other than not.
func (r *feedRig) waitLeader(not int) int {
	r.t.Helper()
	var found int
	eventually(r.t, 20*time.Second, "a change-feed leader", func() bool {
		for i, p := range r.pubs {
			if st := p.Status(); i != not && st.Leader && st.LastSequence > 0 {
				found = i
				return true
			}
		}
		return false
	})
	return found
}

// kill stops publisher i abruptly: no resignation, so its successor takes
// over only when its lease expires, as after kill -9.
func (r *feedRig) kill(i int) {
	p := r.pubs[i]
	p.etcd.Close()
	p.nc.Close()
	p.cancel()
	<-p.done
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func resourceVersion(t *testing.T, obj []byte) int64 {
	t.Helper()
	var o struct {
		Metadata struct {
			Name            string `json:"name"`
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(obj, &o); err != nil {
		t.Fatal(err)
	}
	rv, err := strconv.ParseInt(o.Metadata.ResourceVersion, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion of %s: %v", obj, err)
	}
	return rv
}

func objectName(t *testing.T, obj []byte) string {
	t.Helper()
	var o struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(obj, &o); err != nil {
		t.Fatal(err)
	}
	return o.Metadata.Name
}

// watchEvents streams the events of one Watch into a channel; the final
// error (the stream's end) follows on errc.
func watchEvents(t *testing.T, ctx context.Context, c configv1.ConfigServiceClient, req *configv1.WatchRequest) (<-chan *configv1.WatchEvent, <-chan error) {
	t.Helper()
	stream, err := c.Watch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	events, errc := make(chan *configv1.WatchEvent, 10000), make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			for _, e := range resp.GetEvents() {
				events <- e
			}
		}
	}()
	return events, errc
}

// TestWatchAcrossLeaderChange: a client lists, then watches from the
// list's revision, and sees every later change of its kind exactly once,
// in order, byte for byte as Apply returned the object, while the
// change-feed leader is killed and replaced.
func TestWatchAcrossLeaderChange(t *testing.T) {
	w := newWorldWith(t, worldOptions{publishers: 2})
	admin := w.client(must(spiffe.NewAdmin(spiffe.DefaultTrustDomain(), "")))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader := w.feed.waitLeader(-1)
	mustApply(t, admin, "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n")
	mustApply(t, admin, "apiVersion: v1\nkind: Service\nmetadata: {name: before, namespace: demo}\nspec: {ports: [{port: 80}]}\n")

	list, err := admin.List(ctx, &configv1.ListRequest{Ref: &configv1.ObjectRef{Kind: "Service", Namespace: "demo"}})
	if err != nil || len(list.GetObjects()) != 1 {
		t.Fatalf("list: %d objects, %v", len(list.GetObjects()), err)
	}
	events, errc := watchEvents(t, ctx, admin, &configv1.WatchRequest{
		Ref: &configv1.ObjectRef{Kind: "Service", Namespace: "demo"}, AfterRevision: list.GetRevision(),
	})

	type change struct {
		typ  configv1.WatchEventType
		name string
		rev  int64
		obj  []byte // nil: not compared (deletes)
	}
	var want []change
	svc := func(name, port string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: demo}\nspec: {ports: [{port: %s}]}\n", name, port)
	}
	apply := func(manifest string) {
		t.Helper()
		resp := mustApply(t, admin, manifest)
		typ := configv1.WatchEventType_WATCH_EVENT_TYPE_ADDED
		if resp.GetResult() == configv1.ApplyResult_APPLY_RESULT_CONFIGURED {
			typ = configv1.WatchEventType_WATCH_EVENT_TYPE_MODIFIED
		}
		want = append(want, change{typ, objectName(t, resp.GetObject()), resourceVersion(t, resp.GetObject()), resp.GetObject()})
	}
	// Noise in another namespace and kind, which the watch must not see.
	mustApply(t, admin, "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n")
	for i := range 10 {
		apply(svc(fmt.Sprint("svc-", i), "80"))
		mustApply(t, admin, fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: noise-%d, namespace: other}\nspec: {ports: [{port: 80}]}\n", i))
	}
	w.feed.kill(leader)
	// Changes while nobody publishes reach the watch once the next leader
	// catches up.
	for i := 10; i < 20; i++ {
		apply(svc(fmt.Sprint("svc-", i), "80"))
	}
	next := w.feed.waitLeader(leader)
	t.Logf("leader config-%d killed; config-%d leads", leader, next)
	for i := 20; i < 30; i++ {
		apply(svc(fmt.Sprint("svc-", i), "80"))
	}
	apply(svc("svc-0", "81"))
	apply(svc("before", "81"))
	if _, err := admin.Delete(ctx, &configv1.DeleteRequest{Ref: &configv1.ObjectRef{Kind: "Service", Namespace: "demo", Name: "svc-1"}}); err != nil {
		t.Fatal(err)
	}
	want = append(want, change{typ: configv1.WatchEventType_WATCH_EVENT_TYPE_DELETED, name: "svc-1"})
	// The last change: once it arrives, anything duplicated or out of
	// order would have arrived before it.
	apply(svc("last", "80"))

	var got []change
	for len(got) == 0 || got[len(got)-1].name != "last" {
		select {
		case e := <-events:
			got = append(got, change{e.GetType(), objectName(t, e.GetObject()), e.GetRevision(), e.GetObject()})
			if rv := resourceVersion(t, e.GetObject()); rv != e.GetRevision() {
				t.Fatalf("event at %d carries resourceVersion %d", e.GetRevision(), rv)
			}
		case err := <-errc:
			t.Fatalf("watch ended after %d events: %v", len(got), err)
		case <-ctx.Done():
			t.Fatalf("timed out after %d of %d events", len(got), len(want))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		g, wt := got[i], want[i]
		if i > 0 && g.rev <= got[i-1].rev {
			t.Errorf("event %d at revision %d does not follow %d", i, g.rev, got[i-1].rev)
		}
		if g.typ != wt.typ || g.name != wt.name || (wt.obj != nil && (g.rev != wt.rev || !bytes.Equal(g.obj, wt.obj))) {
			t.Errorf("event %d = %v %s@%d\n%s\nwant %v %s@%d\n%s", i, g.typ, g.name, g.rev, g.obj, wt.typ, wt.name, wt.rev, wt.obj)
		}
	}
	if st := w.feed.hub.Status(); st.Resets != 1 {
		t.Errorf("the watch cache reset %d times, want only at start", st.Resets)
	}
}

// TestWatchFromTooOldRevision: a watch from a revision the cache no longer
// covers — dropped from the ring, or before the cache started — gets
// OutOfRange and must re-list; one within the ring is served even though
// etcd compacted that history.
func TestWatchFromTooOldRevision(t *testing.T) {
	w := newWorldWith(t, worldOptions{publishers: 1, hub: watchhub.Options{Capacity: 4}})
	admin := w.client(must(spiffe.NewAdmin(spiffe.DefaultTrustDomain(), "")))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nsRev := resourceVersion(t, mustApply(t, admin, "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n").GetObject())
	var revs []int64
	for i := range 6 {
		resp := mustApply(t, admin, fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: svc-%d, namespace: demo}\nspec: {ports: [{port: 80}]}\n", i))
		revs = append(revs, resourceVersion(t, resp.GetObject()))
	}
	if _, err := w.etcd.Compact(ctx, revs[5]); err != nil {
		t.Fatal(err)
	}
	first := func(after int64) (*configv1.WatchEvent, error) {
		t.Helper()
		events, errc := watchEvents(t, ctx, admin, &configv1.WatchRequest{Ref: &configv1.ObjectRef{Kind: "Service"}, AfterRevision: after})
		select {
		case e := <-events:
			return e, nil
		case err := <-errc:
			return nil, err
		case <-ctx.Done():
			t.Fatalf("watch after %d: nothing arrived", after)
			return nil, nil
		}
	}
	// Once the last change arrives, the cache holds it: the ring (4
	// events) then covers everything after svc-1.
	if e, err := first(revs[4]); err != nil || e.GetRevision() != revs[5] {
		t.Fatalf("watch after svc-4: %v, %v", e, err)
	}
	for _, after := range []int64{1, nsRev, revs[0]} {
		_, err := first(after)
		if status.Code(err) != codes.OutOfRange || !bytes.Contains([]byte(err.Error()), []byte("too old resource version")) {
			t.Errorf("watch after %d: %v, want OutOfRange (too old resource version)", after, err)
		}
	}
	if e, err := first(revs[1]); err != nil || e.GetRevision() != revs[2] {
		t.Fatalf("watch after svc-1 (oldest covered): %v, %v", e, err)
	}
	if st := w.feed.hub.Status(); st.Oldest != revs[1] || !slices.Contains(revs, st.Revision) {
		t.Errorf("hub status %+v", st)
	}
	_, err := first(-1)
	wantCode(t, err, codes.InvalidArgument, "after_revision")
}
