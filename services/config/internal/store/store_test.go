package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/services/config/internal/resource"
	"github.com/ambitmesh/ambit/services/config/internal/store"
)

type fixture struct {
	t     *testing.T
	stack *devstack.Stack
	etcd  *clientv3.Client
	store *store.Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	stack, err := devstack.Start(ctx, devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Stop() })
	f := &fixture{t: t, stack: stack}
	f.etcd = f.client()
	f.store = f.newStore(store.Options{})
	return f
}

func (f *fixture) client() *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{Endpoints: f.stack.EtcdEndpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

func (f *fixture) newStore(opts store.Options) *store.Store {
	if opts.Etcd == nil {
		opts.Etcd = f.etcd
	}
	s, err := store.New(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func decode(t *testing.T, manifest string) *resource.Object {
	t.Helper()
	objs, err := resource.Decode([]byte(manifest))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := resource.Validate(objs[0]); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return objs[0]
}

func (f *fixture) apply(manifest string) (store.Stored, store.Result) {
	f.t.Helper()
	st, res, err := f.store.Apply(context.Background(), decode(f.t, manifest), false)
	if err != nil {
		f.t.Fatalf("apply: %v", err)
	}
	return st, res
}

const nsDemo = `
apiVersion: v1
kind: Namespace
metadata:
  name: demo
`

func service(name, extra string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: demo
%s
spec:
  selector: {app: %s}
  ports:
  - port: 80
    targetPort: 8080
`, name, extra, name)
}

func TestApplyCreateUpdateUnchanged(t *testing.T) {
	f := newFixture(t)
	f.apply(nsDemo)

	created, res := f.apply(service("echo", ""))
	if res != store.Created {
		t.Fatalf("first apply = %v, want created", res)
	}
	m := created.Object.Metadata
	if m.UID == "" || m.Generation != 1 || m.CreationTimestamp.IsZero() || m.ResourceVersion != fmt.Sprint(created.Revision) {
		t.Fatalf("created metadata = %+v", m)
	}

	again, res := f.apply(service("echo", ""))
	if res != store.Unchanged || again.Revision != created.Revision {
		t.Fatalf("re-apply = %v at %d, want unchanged at %d", res, again.Revision, created.Revision)
	}

	labelled, res := f.apply(service("echo", "  labels: {tier: web}"))
	if res != store.Configured || labelled.Object.Metadata.Generation != 1 {
		t.Fatalf("label change = %v generation %d, want configured, generation 1", res, labelled.Object.Metadata.Generation)
	}
	if labelled.Object.Metadata.UID != m.UID {
		t.Fatal("uid changed on update")
	}

	changed := strings.Replace(service("echo", "  labels: {tier: web}"), "port: 80", "port: 81", 1)
	updated, res := f.apply(changed)
	if res != store.Configured || updated.Object.Metadata.Generation != 2 {
		t.Fatalf("spec change = %v generation %d, want configured, generation 2", res, updated.Object.Metadata.Generation)
	}
	// The cluster IP allocated on create survives an apply that omits it.
	if ip := updated.Object.Spec.(*corev1.ServiceSpec).ClusterIP; ip != created.Object.Spec.(*corev1.ServiceSpec).ClusterIP || ip == "" {
		t.Fatalf("cluster IP %q after update, was %q", ip, created.Object.Spec.(*corev1.ServiceSpec).ClusterIP)
	}

	got, err := f.store.Get(context.Background(), updated.Object.Key())
	if err != nil || got.Revision != updated.Revision {
		t.Fatalf("get = %v, %v", got.Revision, err)
	}
}

func TestApplyErrors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	_, _, err := f.store.Apply(ctx, decode(t, service("echo", "")), false)
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), `namespace "demo"`) {
		t.Fatalf("apply into a missing namespace: %v", err)
	}

	f.apply(nsDemo)
	st, _ := f.apply(service("echo", ""))
	stale := decode(t, service("echo", fmt.Sprintf("  resourceVersion: %q\n  labels: {a: b}", fmt.Sprint(st.Revision-1))))
	if _, _, err := f.store.Apply(ctx, stale, false); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale resourceVersion: %v", err)
	}
	fresh := decode(t, service("echo", fmt.Sprintf("  resourceVersion: %q\n  labels: {a: b}", fmt.Sprint(st.Revision))))
	if _, res, err := f.store.Apply(ctx, fresh, false); err != nil || res != store.Configured {
		t.Fatalf("current resourceVersion: %v %v", res, err)
	}

	moved := strings.Replace(service("echo", ""), "targetPort: 8080", "targetPort: 8080\n  clusterIP: 10.96.200.200", 1)
	if _, _, err := f.store.Apply(ctx, decode(t, moved), false); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "spec.clusterIP") {
		t.Fatalf("changing clusterIP: %v", err)
	}
	outside := strings.Replace(service("other", ""), "targetPort: 8080", "targetPort: 8080\n  clusterIP: 10.200.0.1", 1)
	if _, _, err := f.store.Apply(ctx, decode(t, outside), false); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "10.200.0.1") {
		t.Fatalf("clusterIP outside the CIDR: %v", err)
	}
}

func TestDryRunStoresNothing(t *testing.T) {
	f := newFixture(t)
	f.apply(nsDemo)
	_, res, err := f.store.Apply(context.Background(), decode(t, service("echo", "")), true)
	if err != nil || res != store.Created {
		t.Fatalf("dry run = %v, %v", res, err)
	}
	resp, err := f.etcd.Get(context.Background(), "/ambit/v1/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 1 { // the namespace only
		t.Fatalf("%d keys after a dry run, want 1", resp.Count)
	}
}

// Concurrent creates through three stores (as three config replicas) get
// distinct cluster IPs.
func TestConcurrentServiceIPsAreDistinct(t *testing.T) {
	f := newFixture(t)
	f.apply(nsDemo)
	stores := []*store.Store{f.store, f.newStore(store.Options{Etcd: f.client()}), f.newStore(store.Options{Etcd: f.client()})}
	const n = 200
	ips := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _, err := stores[i%3].Apply(context.Background(), decode(t, service(fmt.Sprintf("svc-%d", i), "")), false)
			if err != nil {
				errs <- err
				return
			}
			ips[i] = st.Object.Spec.(*corev1.ServiceSpec).ClusterIP
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for i, ip := range ips {
		if _, err := netip.ParseAddr(ip); err != nil {
			t.Fatalf("svc-%d has cluster IP %q", i, ip)
		}
		if j, dup := seen[ip]; dup {
			t.Fatalf("svc-%d and svc-%d share %s", i, j, ip)
		}
		seen[ip] = i
	}
	resp, err := f.etcd.Get(context.Background(), "/ambit/v1/_alloc/service-ip/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != n {
		t.Fatalf("%d allocation keys (%v), want %d", resp.Count, err, n)
	}
}

func TestServiceEntryVIPs(t *testing.T) {
	f := newFixture(t)
	f.apply(nsDemo)
	se := `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: demo}
spec:
  hosts: [api.example.com, "*.wild.example.com"]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: NONE
`
	st, _ := f.apply(se)
	if !strings.Contains(string(st.Object.Status), `"host":"api.example.com"`) || strings.Contains(string(st.Object.Status), "wild") {
		t.Fatalf("status = %s, want one VIP for api.example.com only", st.Object.Status)
	}
	if !strings.Contains(string(st.Object.Status), `"value":"240.240.`) {
		t.Fatalf("VIP not from 240.240.0.0/16: %s", st.Object.Status)
	}
	// Listing addresses explicitly releases the automatic VIP.
	explicit := strings.Replace(se, "resolution: NONE", "resolution: NONE\n  addresses: [192.0.2.10]", 1)
	st2, _ := f.apply(explicit)
	if strings.Contains(string(st2.Object.Status), "240.240.") {
		t.Fatalf("automatic VIP kept after addresses were given: %s", st2.Object.Status)
	}
	resp, _ := f.etcd.Get(context.Background(), "/ambit/v1/_alloc/serviceentry-vip/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if resp.Count != 0 {
		t.Fatalf("%d VIP allocations left, want 0", resp.Count)
	}
}

func TestDeleteNamespaceCascadesAndReleases(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ns, _ := f.apply(nsDemo)
	f.apply(service("a", ""))
	f.apply(service("b", ""))
	if _, err := f.store.Delete(ctx, ns.Object.Key(), 0); err != nil {
		t.Fatal(err)
	}
	resp, err := f.etcd.Get(ctx, "/ambit/v1/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("%d keys left after deleting the namespace (%v)", resp.Count, err)
	}
	if _, err := f.store.Delete(ctx, ns.Object.Key(), 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestUpdateStatusKeepsGeneration(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.apply(nsDemo)
	pod, _ := f.apply(`
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: demo}
spec:
  nodeName: node-a
  serviceAccountName: sa
  containers: [{name: app, image: echo}]
`)
	st, err := f.store.UpdateStatus(ctx, pod.Object.Key(), []byte(`{"phase":"Running","podIPs":[{"ip":"10.251.1.2"}]}`), pod.Revision, resource.Validate)
	if err != nil {
		t.Fatal(err)
	}
	if st.Object.Metadata.Generation != 1 || !strings.Contains(string(st.Object.Status), "10.251.1.2") {
		t.Fatalf("after status update: generation %d status %s", st.Object.Metadata.Generation, st.Object.Status)
	}
	if _, err := f.store.UpdateStatus(ctx, pod.Object.Key(), []byte(`{"phase":"Running"}`), pod.Revision, resource.Validate); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale status update: %v", err)
	}
	// A re-apply of the spec keeps the status.
	again, res := f.apply(`
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: demo, labels: {app: p}}
spec:
  nodeName: node-a
  serviceAccountName: sa
  containers: [{name: app, image: echo}]
`)
	if res != store.Configured || !strings.Contains(string(again.Object.Status), "10.251.1.2") {
		t.Fatalf("re-apply dropped status: %s", again.Object.Status)
	}
}

func TestListPagesAtOneRevision(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.apply(nsDemo)
	for i := range 7 {
		label := "odd"
		if i%2 == 0 {
			label = "even"
		}
		f.apply(service(fmt.Sprintf("s%d", i), "  labels: {parity: "+label+"}"))
	}
	var names []string
	opts := store.ListOptions{Namespace: "demo", Limit: 3}
	first, err := f.store.List(ctx, "core", "Service", opts)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(service("s9", "")) // written between pages: not in this listing
	page := first
	for {
		for _, it := range page.Items {
			names = append(names, it.Object.Metadata.Name)
		}
		if page.Revision != first.Revision {
			t.Fatalf("page at revision %d, first at %d", page.Revision, first.Revision)
		}
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
		if page, err = f.store.List(ctx, "core", "Service", opts); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(names, ","); got != "s0,s1,s2,s3,s4,s5,s6" {
		t.Fatalf("listed %s", got)
	}
	even, err := f.store.List(ctx, "core", "Service", store.ListOptions{Selector: "parity=even"})
	if err != nil || len(even.Items) != 4 {
		t.Fatalf("selector parity=even: %d items, %v", len(even.Items), err)
	}
	if _, err := f.store.List(ctx, "core", "Service", store.ListOptions{Selector: "a in (b"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad selector: %v", err)
	}
}

// TestFeedEventMatchesReads: events built from what the feed carries (the
// publisher's envelope: the value, create revision and, for a delete, the
// last value) render byte for byte as Get and Apply return the object,
// with resourceVersion the event's revision.
func TestFeedEventMatchesReads(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns, _ := f.apply(nsDemo)
	wch := f.etcd.Watch(ctx, changefeed.ResourcePrefix, clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(ns.Revision+1))
	created, _ := f.apply(service("a", ""))
	updated, _ := f.apply(service("a", "  labels: {v: \"2\"}"))
	deleted, err := f.store.Delete(ctx, created.Object.Key(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []store.Event
	for len(got) < 3 {
		resp := <-wch
		if err := resp.Err(); err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Events {
			ref, err := changefeed.ParseKey(string(ev.Kv.Key))
			if err != nil {
				t.Fatal(err)
			}
			fe := changefeed.Event{Type: changefeed.EventPut, Position: changefeed.Position{Revision: ev.Kv.ModRevision}, Object: changefeed.Object{
				Ref: ref, Value: ev.Kv.Value, CreateRevision: ev.Kv.CreateRevision, ModRevision: ev.Kv.ModRevision, Version: ev.Kv.Version,
			}}
			if ev.Type == clientv3.EventTypeDelete {
				fe.Type = changefeed.EventDelete
				fe.Object.Value, fe.Object.CreateRevision, fe.Object.Version = ev.PrevKv.Value, ev.PrevKv.CreateRevision, ev.PrevKv.Version
			}
			e, err := f.store.FeedEvent(fe)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e)
		}
	}
	deleteRev := got[2].Revision
	// The deleted object as a watch reports it: the last value, stamped
	// with the delete's revision.
	deleted.Object.Metadata.ResourceVersion = strconv.FormatInt(deleteRev, 10)
	want := []struct {
		typ  store.EventType
		rev  int64
		json []byte
	}{
		{store.Added, created.Revision, mustJSON(t, created)},
		{store.Modified, updated.Revision, mustJSON(t, updated)},
		{store.Deleted, deleteRev, mustJSON(t, deleted)},
	}
	for i, w := range want {
		g := got[i]
		if g.Type != w.typ || g.Revision != w.rev || !bytes.Equal(mustJSON(t, g.Object), w.json) {
			t.Errorf("event %d = %d@%d %s\nwant %d@%d %s", i, g.Type, g.Revision, mustJSON(t, g.Object), w.typ, w.rev, w.json)
		}
	}
	if deleteRev <= updated.Revision {
		t.Errorf("delete revision %d not after the update's %d", deleteRev, updated.Revision)
	}
	if _, err := f.store.FeedEvent(changefeed.Event{Type: changefeed.EventDelete, Position: changefeed.Position{Revision: deleteRev}, Object: changefeed.Object{Ref: changefeed.ResourceRef{Group: "core", Kind: "Service", Namespace: "demo", Name: "a"}}}); err == nil {
		t.Error("a delete without its last value rendered")
	}
}

func mustJSON(t *testing.T, st store.Stored) []byte {
	t.Helper()
	b, err := st.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnsureExistsNeverOverwrites(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	st, res, err := f.store.EnsureExists(ctx, decode(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n"))
	if err != nil || res != store.Created {
		t.Fatalf("first ensure: %v %v", res, err)
	}
	labelled, _ := f.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {istio.io/dataplane-mode: ambient}}\n")
	again, res, err := f.store.EnsureExists(ctx, decode(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n"))
	if err != nil || res != store.Unchanged || again.Revision != labelled.Revision || again.Object.Metadata.Labels["istio.io/dataplane-mode"] != "ambient" {
		t.Fatalf("second ensure: %v %v, labels %v (created at %d)", res, err, again.Object.Metadata.Labels, st.Revision)
	}
}
