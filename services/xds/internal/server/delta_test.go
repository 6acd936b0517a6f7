package server_test

import (
	"fmt"
	"strings"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

// TestWildcardSubscribeAckUpdate: the first response holds everything,
// later ones only what changed, removals included; ACKs move the acked
// revision.
func TestWildcardSubscribeAckUpdate(t *testing.T) {
	h := newHarness(t, harnessOptions{replica: "xds-test"})
	h.cache.Apply(10, upsert(addressType, res("a", "1"), res("b", "1"), res("c", "1")))
	c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))

	c.subscribe(addressType)
	r := c.recv()
	check(t, "first response", names(r), []string{"a@1", "b@1", "c@1"})
	if r.GetSystemVersionInfo() != "10" || r.GetControlPlane().GetIdentifier() != "xds-test" || len(r.GetRemovedResources()) != 0 {
		t.Fatalf("first response: version %q control plane %v removed %v", r.GetSystemVersionInfo(), r.GetControlPlane(), r.GetRemovedResources())
	}
	c.ack(r)
	waitFor(t, "ack of revision 10", ackedRevision(h, "ztunnel~n1", 10))

	h.cache.Apply(11, removal(addressType, "b"), upsert(addressType, res("a", "2")))
	r = c.recv()
	check(t, "update", names(r), []string{"a@2"})
	check(t, "removed", r.GetRemovedResources(), []string{"b"})
	if r.GetSystemVersionInfo() != "11" {
		t.Fatalf("version %q", r.GetSystemVersionInfo())
	}
	c.ack(r)
	waitFor(t, "ack of revision 11", ackedRevision(h, "ztunnel~n1", 11))

	// A revision that changes nothing this proxy gets: it is at that
	// revision without a message.
	h.cache.Apply(12, upsert(authzType, res("policy", "1")))
	waitFor(t, "caught up to revision 12", ackedRevision(h, "ztunnel~n1", 12))

	p, _ := h.proxy("ztunnel~n1")
	if p.Component != "ztunnel" || p.Version != "v0.1.0-test" || p.Auth != "certificate" || !strings.HasSuffix(p.Identity, "/ambit/node/n1") {
		t.Fatalf("proxy info: %+v", p)
	}
}

// TestNackIsRecordedAndNotResent: a NACK is recorded with its error and
// the rejected version is not sent again; the next change is.
func TestNackIsRecordedAndNotResent(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.cache.Apply(5, upsert(addressType, res("a", "1"), res("b", "1")))
	c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))
	c.subscribe(addressType)
	c.ack(c.recv())
	waitFor(t, "ack", ackedRevision(h, "ztunnel~n1", 5))

	h.cache.Apply(6, upsert(addressType, res("a", "bad")))
	r := c.recv()
	check(t, "bad update", names(r), []string{"a@bad"})
	c.nack(r, "a: invalid address")
	waitFor(t, "nack recorded", func() error {
		p, err := h.proxy("ztunnel~n1")
		if err != nil {
			return err
		}
		if p.NackedRevision != 6 || p.NackError != "a: invalid address" || p.AckedRevision != 5 {
			return fmt.Errorf("%+v", p)
		}
		return nil
	})

	// The next response is the next change, not the rejected one again.
	h.cache.Apply(7, upsert(addressType, res("b", "2")))
	r = c.recv()
	check(t, "after nack", names(r), []string{"b@2"})
	c.ack(r)
	waitFor(t, "nack cleared by the next ack", func() error {
		p, err := h.proxy("ztunnel~n1")
		if err != nil {
			return err
		}
		if p.NackedRevision != 0 || p.NackError != "" || p.AckedRevision != 7 {
			return fmt.Errorf("%+v", p)
		}
		return nil
	})
	// And fixing the rejected resource sends it.
	h.cache.Apply(8, upsert(addressType, res("a", "fixed")))
	check(t, "fix", names(c.recv()), []string{"a@fixed"})
}

// TestOnDemandByAlias: explicit subscriptions by name and by IP alias,
// unknown names, an alias moving to another resource, unrelated changes
// (not sent) and unsubscribe.
func TestOnDemandByAlias(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.cache.Apply(20, upsert(addressType,
		res("c1//Pod/ns/a", "1", "net/10.0.0.1"),
		res("c1//Pod/ns/b", "1", "net/10.0.0.2"),
		res("c1//Pod/ns/c", "1", "net/10.0.0.3"),
	))
	c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))

	c.subscribe(addressType, "net/10.0.0.1", "net/10.9.9.9")
	r := c.recv()
	check(t, "on-demand", names(r), []string{"c1//Pod/ns/a@1"})
	check(t, "aliases", r.GetResources()[0].GetAliases(), []string{"net/10.0.0.1"})
	check(t, "unknown alias", r.GetRemovedResources(), []string{"net/10.9.9.9"})
	c.ack(r)

	// An unrelated change is not sent; the next response answers the next
	// subscription.
	h.cache.Apply(21, upsert(addressType, res("c1//Pod/ns/c", "2", "net/10.0.0.3")))
	c.subscribe(addressType, "c1//Pod/ns/b")
	r = c.recv()
	check(t, "by name", names(r), []string{"c1//Pod/ns/b@1"})
	if len(r.GetResources()[0].GetAliases()) != 0 || len(r.GetRemovedResources()) != 0 {
		t.Fatalf("by name: %v", r)
	}
	c.ack(r)

	// The IP moves from a to a new workload d: d is sent for the alias, a
	// removed.
	h.cache.Apply(22, upsert(addressType, res("c1//Pod/ns/a", "2"), res("c1//Pod/ns/d", "1", "net/10.0.0.1")))
	r = c.recv()
	check(t, "alias moved", names(r), []string{"c1//Pod/ns/d@1"})
	check(t, "alias moved: removed", r.GetRemovedResources(), []string{"c1//Pod/ns/a"})
	c.ack(r)

	// A subscription that appears later is delivered when it appears.
	h.cache.Apply(23, upsert(addressType, res("c1//Pod/ns/e", "1", "net/10.9.9.9")))
	r = c.recv()
	check(t, "appeared", names(r), []string{"c1//Pod/ns/e@1"})
	c.ack(r)

	// Unsubscribed names are not pushed any more. An unsubscribe has no
	// answer; the subscription in the same request proves it was taken.
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: addressType,
		ResourceNamesUnsubscribe: []string{"c1//Pod/ns/b"}, ResourceNamesSubscribe: []string{"net/10.0.0.3"}})
	r = c.recv()
	check(t, "subscribe with unsubscribe", names(r), []string{"c1//Pod/ns/c@2"})
	c.ack(r)
	h.cache.Apply(24, upsert(addressType, res("c1//Pod/ns/b", "2", "net/10.0.0.2")))
	waitFor(t, "on-demand stream caught up without a message", ackedRevision(h, "ztunnel~n1", 24))
	c.subscribe(addressType, "c1//Pod/ns/a")
	r = c.recv()
	check(t, "after unsubscribe", names(r), []string{"c1//Pod/ns/a@2"})
	c.ack(r)

	// Removal of a subscribed resource.
	h.cache.Apply(25, removal(addressType, "c1//Pod/ns/d"))
	r = c.recv()
	if len(r.GetResources()) != 0 {
		t.Fatalf("removal sent resources %v", names(r))
	}
	check(t, "removed", r.GetRemovedResources(), []string{"c1//Pod/ns/d", "net/10.0.0.1"})
}

// TestReconnectWithInitialResourceVersions: a client that reconnects with
// what it has gets nothing re-sent when nothing changed, only the changes
// and removals when something did, also from another replica.
func TestReconnectWithInitialResourceVersions(t *testing.T) {
	var rs []*snapshot.Resource
	for i := range 200 {
		rs = append(rs, res(fmt.Sprintf("w%03d", i), "1"))
	}
	h := newHarness(t, harnessOptions{})
	h.cache.Apply(30, upsert(addressType, rs...))
	conn := h.dial(t, nodeIdentity(t, "n1"))
	c := openDelta(t, conn, ztunnelNode("n1"))
	c.subscribe(addressType)
	r := c.recv()
	held := map[string]string{}
	for _, x := range r.GetResources() {
		held[x.GetName()] = x.GetVersion()
	}
	if len(held) != 200 {
		t.Fatalf("got %d resources", len(held))
	}
	c.ack(r)
	c.cancel()

	reconnect := func(h *harness, versions map[string]string) *discovery.DeltaDiscoveryResponse {
		c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))
		c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: addressType, InitialResourceVersions: versions})
		r := c.recv()
		c.ack(r)
		return r
	}

	// Nothing changed: an empty response.
	r = reconnect(h, held)
	if len(r.GetResources()) != 0 || len(r.GetRemovedResources()) != 0 {
		t.Fatalf("unchanged reconnect re-sent %d resources, %d removals", len(r.GetResources()), len(r.GetRemovedResources()))
	}

	// Changes while away: a deletion, an update, an addition.
	h.cache.Apply(31, removal(addressType, "w007"), upsert(addressType, res("w008", "2"), res("new", "1")))
	r = reconnect(h, held)
	check(t, "changed while away", names(r), []string{"new@1", "w008@2"})
	check(t, "deleted while away", r.GetRemovedResources(), []string{"w007"})

	// Another replica (a restart) built from the same feed: nothing to send.
	h2 := newHarness(t, harnessOptions{ca: h.ca})
	h2.cache.Apply(31, upsert(addressType, rs...))
	h2.cache.Apply(31, removal(addressType, "w007"), upsert(addressType, res("w008", "2"), res("new", "1")))
	now := map[string]string{}
	h.cache.Current().Range(addressType, func(r *snapshot.Resource) bool { now[r.Name] = r.Version; return true })
	r = reconnect(h2, now)
	if len(r.GetResources()) != 0 || len(r.GetRemovedResources()) != 0 {
		t.Fatalf("reconnect to another replica re-sent %d resources, %d removals", len(r.GetResources()), len(r.GetRemovedResources()))
	}
}

// TestReplicasProduceIdenticalResources: two replicas fed the same changes
// (in different batches) send byte-identical resources, versions and
// system versions.
func TestReplicasProduceIdenticalResources(t *testing.T) {
	ca := newHarness(t, harnessOptions{}).ca
	h1 := newHarness(t, harnessOptions{ca: ca})
	h2 := newHarness(t, harnessOptions{ca: ca})
	var rs []*snapshot.Resource
	for i := range 300 {
		rs = append(rs, res(fmt.Sprintf("w%03d", i), "1", fmt.Sprintf("net/10.0.%d.%d", i/256, i%256)))
	}
	h1.cache.Apply(40, upsert(addressType, rs...), upsert(authzType, res("p", "1")))
	for i := 0; i < len(rs); i += 50 {
		h2.cache.Apply(int64(35+i/50), upsert(addressType, rs[i:i+50]...))
	}
	h2.cache.Apply(40, upsert(authzType, res("p", "1")))

	get := func(h *harness) map[string][]byte {
		c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))
		out := map[string][]byte{}
		for _, url := range []string{addressType, authzType} {
			c.subscribe(url)
			r := c.recv()
			out[url+" version"] = []byte(r.GetSystemVersionInfo())
			var order []string
			for _, x := range r.GetResources() {
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(x)
				if err != nil {
					t.Fatal(err)
				}
				out[url+" "+x.GetName()] = b
				order = append(order, x.GetName())
			}
			out[url+" order"] = []byte(strings.Join(order, ","))
		}
		return out
	}
	a, b := get(h1), get(h2)
	if len(a) != len(b) || len(a) < 300 {
		t.Fatalf("replicas sent %d and %d entries", len(a), len(b))
	}
	for k, v := range a {
		if string(b[k]) != string(v) {
			t.Fatalf("replicas differ at %s", k)
		}
	}
}

// TestManyTypesDoNotDeadlock: a client subscribes to many types with big
// responses and keeps sending without reading; the server keeps reading
// (requests never wait for the sender), and the client then gets
// everything.
func TestManyTypesDoNotDeadlock(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	const types = 24
	var deltas []snapshot.Delta
	big := strings.Repeat("x", 4096)
	for i := range types {
		var rs []*snapshot.Resource
		for j := range 100 {
			rs = append(rs, res(fmt.Sprintf("r%d-%s", j, big), "1"))
		}
		deltas = append(deltas, upsert(fmt.Sprintf("type.googleapis.com/test.T%02d", i), rs...))
	}
	h.cache.Apply(1, deltas...)
	c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))
	// ~10 MB of responses pending, far beyond the HTTP/2 windows, while the
	// client sends all subscriptions and a storm of no-op requests.
	for i := range types {
		c.subscribe(fmt.Sprintf("type.googleapis.com/test.T%02d", i))
	}
	for i := 0; i < 2000; i++ {
		c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: fmt.Sprintf("type.googleapis.com/test.T%02d", i%types), ResponseNonce: "unknown"})
	}
	seen := map[string]int{}
	for len(seen) < types || total(seen) < types*100 {
		r := c.recv()
		seen[r.GetTypeUrl()] += len(r.GetResources())
		c.ack(r)
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestLargeFullSyncIsSplit: a full sync beyond MaxResponseBytes arrives in
// several responses; the proxy counts as acked once the last one is.
func TestLargeFullSyncIsSplit(t *testing.T) {
	h := newHarness(t, harnessOptions{maxResponseBytes: 8 << 10})
	var rs []*snapshot.Resource
	for i := range 500 {
		rs = append(rs, res(fmt.Sprintf("workload-%04d", i), "1"))
	}
	h.cache.Apply(50, upsert(addressType, rs...))
	c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))
	c.subscribe(addressType)
	got := map[string]bool{}
	responses := 0
	for len(got) < 500 {
		r := c.recv()
		responses++
		for _, x := range r.GetResources() {
			if got[x.GetName()] {
				t.Fatalf("%s sent twice", x.GetName())
			}
			got[x.GetName()] = true
		}
		c.ack(r)
	}
	if responses < 3 {
		t.Fatalf("500 resources in %d responses of at most 8 KiB", responses)
	}
	waitFor(t, "acked after the last part", ackedRevision(h, "ztunnel~n1", 50))
}

// TestWildcardToggle: "*" added and removed on a live stream.
func TestWildcardToggle(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.cache.Apply(1, upsert(addressType, res("a", "1", "ip-a"), res("b", "1"), res("c", "1")))
	c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))
	c.subscribe(addressType, "ip-a")
	r := c.recv()
	check(t, "on-demand", names(r), []string{"a@1"})
	c.ack(r)
	// Turning wildcard on sends what the client does not have yet.
	c.subscribe(addressType, "*")
	r = c.recv()
	check(t, "wildcard on", names(r), []string{"b@1", "c@1"})
	c.ack(r)
	// And off: only the explicit subscriptions are followed. A new one in
	// the same request proves the server took the change.
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: addressType,
		ResourceNamesUnsubscribe: []string{"*"}, ResourceNamesSubscribe: []string{"c"}})
	r = c.recv()
	check(t, "subscription answered", names(r), []string{"c@1"})
	c.ack(r)
	h.cache.Apply(2, upsert(addressType, res("b", "2")))
	h.cache.Apply(3, upsert(addressType, res("a", "2", "ip-a")))
	r = c.recv()
	check(t, "wildcard off", names(r), []string{"a@2"})
}

// TestAuthentication: who may open a stream, and for whom.
func TestAuthentication(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.cache.Apply(1, upsert(addressType, res("a", "1")))
	workload, _ := spiffe.NewWorkload(td, "apps", "waypoint")
	admin, _ := spiffe.NewAdmin(td, "")
	gateway, _ := spiffe.NewControlPlane(td, spiffe.ComponentGateway)
	tests := []struct {
		name string
		id   spiffe.Identity
		node string
		code codes.Code
	}{
		{name: "own node", id: nodeIdentity(t, "n1"), node: "ztunnel~n1", code: codes.OK},
		{name: "another node", id: nodeIdentity(t, "n1"), node: "ztunnel~n2", code: codes.PermissionDenied},
		{name: "no certificate", node: "ztunnel~n1", code: codes.Unauthenticated},
		{name: "admin", id: admin, node: "ztunnel~n1", code: codes.PermissionDenied},
		{name: "gateway controller for anyone", id: gateway, node: "gateway~apps~gw", code: codes.OK},
		{name: "waypoint in its namespace", id: workload, node: "waypoint~apps~wp", code: codes.OK},
		{name: "waypoint of another namespace", id: workload, node: "waypoint~prod~wp", code: codes.PermissionDenied},
		{name: "empty node id", id: nodeIdentity(t, "n1"), node: "", code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := ztunnelNode("")
			n.Id = tt.node
			c := openDelta(t, h.dial(t, tt.id), n)
			// A refused stream may end before the request is written (EOF);
			// its status comes from Recv.
			_ = c.stream.Send(&discovery.DeltaDiscoveryRequest{Node: n, TypeUrl: addressType})
			if tt.code == codes.OK {
				if r := c.recv(); len(r.GetResources()) != 1 {
					t.Fatalf("got %v", names(r))
				}
				return
			}
			if got := status.Code(c.recvErr()); got != tt.code {
				t.Fatalf("code %v, want %v", got, tt.code)
			}
		})
	}
}

// TestDebounceCoalesces: changes within the debounce window reach the
// client as one response with the newest versions.
func TestDebounceCoalesces(t *testing.T) {
	h := newHarness(t, harnessOptions{debounce: 500_000_000})
	h.cache.Apply(1, upsert(addressType, res("a", "0")))
	c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))
	c.subscribe(addressType)
	c.ack(c.recv())
	for i := 1; i <= 5; i++ {
		h.cache.Apply(int64(1+i), upsert(addressType, res("a", fmt.Sprint(i)), res(fmt.Sprintf("n%d", i), "1")))
	}
	r := c.recv()
	check(t, "coalesced", names(r), []string{"a@5", "n1@1", "n2@1", "n3@1", "n4@1", "n5@1"})
	if r.GetSystemVersionInfo() != "6" {
		t.Fatalf("version %q", r.GetSystemVersionInfo())
	}
}

// TestNothingIsServedBeforeReady: until the cache holds the feed's state,
// a reconnecting proxy is not compared with an empty cache (which would
// delete everything it has); it is answered once ready.
func TestNothingIsServedBeforeReady(t *testing.T) {
	ready := make(chan struct{})
	h := newHarness(t, harnessOptions{ready: ready})
	c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: addressType, InitialResourceVersions: map[string]string{"a": "1", "b": "1"}})
	waitFor(t, "stream registered", func() error { _, err := h.proxy("ztunnel~n1"); return err })
	h.cache.Apply(3, upsert(addressType, res("a", "1"), res("b", "2")))
	close(ready)
	r := c.recv()
	check(t, "first response after ready", names(r), []string{"b@2"})
	if len(r.GetRemovedResources()) != 0 {
		t.Fatalf("removed %v", r.GetRemovedResources())
	}
}
