package xdsclient

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/mesh"
)

// A scripted delta ADS server on loopback: the test reads what the client
// sends on each stream and decides every response and when the stream
// ends. Nothing waits on time: every step waits for the message or log
// line that proves the previous one happened (the timeouts only fail a
// test that hangs).

const waitLimit = 10 * time.Second

type scriptedADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	streams chan *adsStream
}

type adsStream struct {
	reqs chan *discoveryv3.DeltaDiscoveryRequest // closed when the client's side ends
	out  chan *discoveryv3.DeltaDiscoveryResponse
	end  chan error // the handler returns what is sent here
}

func (a *scriptedADS) DeltaAggregatedResources(s discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	st := &adsStream{
		reqs: make(chan *discoveryv3.DeltaDiscoveryRequest, 64),
		out:  make(chan *discoveryv3.DeltaDiscoveryResponse),
		end:  make(chan error, 1),
	}
	ctx := s.Context()
	select {
	case a.streams <- st:
	case <-ctx.Done():
		return nil
	}
	go func() {
		defer close(st.reqs)
		for {
			r, err := s.Recv()
			if err != nil {
				return
			}
			select {
			case st.reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case r := <-st.out:
			if err := s.Send(r); err != nil {
				return err
			}
		case err := <-st.end:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}

// logSink records the client's log messages so a test can wait for one.
type logSink struct {
	mu     sync.Mutex
	msgs   []string
	next   int
	notify chan struct{}
}

func newLogSink() *logSink { return &logSink{notify: make(chan struct{})} }

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logSink) WithGroup(string) slog.Handler            { return l }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
	return nil
}

// waitFor waits for the next log message msg after those already waited
// for.
func (l *logSink) waitFor(t *testing.T, msg string) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		l.mu.Lock()
		for l.next < len(l.msgs) {
			l.next++
			if l.msgs[l.next-1] == msg {
				l.mu.Unlock()
				return
			}
		}
		ch := l.notify
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("the client never logged %q", msg)
		}
	}
}

// Messages the client logs (client.go); the tests wait on them.
const (
	logOpen  = "xds stream open"
	logEnded = "xds stream ended; keeping the last state"
)

type harness struct {
	t      *testing.T
	ads    *scriptedADS
	srv    *grpc.Server
	addr   string
	conn   *grpc.ClientConn
	store  *mesh.Store
	client *Client
	logs   *logSink
	cancel context.CancelFunc
	done   chan error
}

// newHarness starts a server on loopback and a client following it. At the
// end of the test the client, the connection and the server stop, and no
// goroutine may be left behind.
func newHarness(t *testing.T) *harness {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	h := &harness{t: t, ads: &scriptedADS{streams: make(chan *adsStream, 4)}, store: mesh.New(), logs: newLogSink()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.serve(ln)
	t.Cleanup(func() { h.srv.Stop() })

	h.conn, err = grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect to a restarted server at once (the default waits 1s).
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: grpcbackoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, MaxDelay: 50 * time.Millisecond}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.conn.Close() })

	h.client = New(Options{Conn: h.conn, Store: h.store, Node: "node-a", Version: "1.2.3",
		Logger: slog.New(h.logs), RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.client.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) serve(ln net.Listener) {
	h.srv = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(h.srv, h.ads)
	go func() { _ = h.srv.Serve(ln) }()
}

// stop cancels the client and waits for Run to return nil.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(waitLimit):
		h.t.Error("Run did not return after its context ended")
	}
}

func (h *harness) nextStream() *adsStream {
	h.t.Helper()
	select {
	case st := <-h.ads.streams:
		return st
	case <-time.After(waitLimit):
		h.t.Fatal("the client opened no stream")
		return nil
	}
}

func (h *harness) recv(st *adsStream) *discoveryv3.DeltaDiscoveryRequest {
	h.t.Helper()
	select {
	case r, ok := <-st.reqs:
		if !ok {
			h.t.Fatal("the client ended the stream")
		}
		return r
	case <-time.After(waitLimit):
		h.t.Fatal("no request from the client")
		return nil
	}
}

// send sends resp and returns the client's ACK or NACK of it.
func (h *harness) send(st *adsStream, resp *discoveryv3.DeltaDiscoveryResponse) *discoveryv3.DeltaDiscoveryRequest {
	h.t.Helper()
	select {
	case st.out <- resp:
	case <-time.After(waitLimit):
		h.t.Fatal("the stream is gone")
	}
	r := h.recv(st)
	if r.GetResponseNonce() != resp.GetNonce() || r.GetTypeUrl() != resp.GetTypeUrl() {
		h.t.Fatalf("answer to %s %s: %v", resp.GetTypeUrl(), resp.GetNonce(), r)
	}
	return r
}

func (h *harness) ack(st *adsStream, resp *discoveryv3.DeltaDiscoveryResponse) {
	h.t.Helper()
	if r := h.send(st, resp); r.GetErrorDetail() != nil {
		h.t.Fatalf("NACK of %s: %v", resp.GetNonce(), r.GetErrorDetail())
	}
}

// handshake takes the two subscriptions a stream opens with.
func (h *harness) handshake(st *adsStream) (addr, authz *discoveryv3.DeltaDiscoveryRequest) {
	h.t.Helper()
	addr, authz = h.recv(st), h.recv(st)
	if addr.GetTypeUrl() != TypeAddress || authz.GetTypeUrl() != TypeAuthorization {
		h.t.Fatalf("subscriptions %s, %s", addr.GetTypeUrl(), authz.GetTypeUrl())
	}
	return addr, authz
}

// Resources in the shapes our xds emits (see the mesh package's testdata).

func workload(ns, name, ip string, mutate ...func(*workloadpb.Workload)) *workloadpb.Address {
	w := &workloadpb.Workload{
		Uid: "Kubernetes//Pod/" + ns + "/" + name, Name: name, Namespace: ns, ServiceAccount: "default",
		TrustDomain: "cluster.local", ClusterId: "Kubernetes", Node: "node-a", TunnelProtocol: workloadpb.TunnelProtocol_HBONE,
		Addresses: [][]byte{netip.MustParseAddr(ip).AsSlice()}, WorkloadType: workloadpb.WorkloadType_POD,
	}
	for _, m := range mutate {
		m(w)
	}
	return &workloadpb.Address{Type: &workloadpb.Address_Workload{Workload: w}}
}

func service(ns, name, vip string) *workloadpb.Address {
	return &workloadpb.Address{Type: &workloadpb.Address_Service{Service: &workloadpb.Service{
		Name: name, Namespace: ns, Hostname: name + "." + ns + ".svc.cluster.local",
		Addresses: []*workloadpb.NetworkAddress{{Address: netip.MustParseAddr(vip).AsSlice()}},
		Ports:     []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}},
	}}}
}

func policy(ns, name string, ports ...uint32) *securitypb.Authorization {
	return &securitypb.Authorization{Name: name, Namespace: ns, Scope: securitypb.Scope_NAMESPACE, Action: securitypb.Action_ALLOW,
		Groups: []*securitypb.Group{{Rules: []*securitypb.Rules{{Matches: []*securitypb.Match{{DestinationPorts: ports}}}}}}}
}

// resourceName is the xDS name of a resource, as our xds names them.
func resourceName(m proto.Message) string {
	switch v := m.(type) {
	case *workloadpb.Address:
		if w := v.GetWorkload(); w != nil {
			return w.GetUid()
		}
		return v.GetService().GetNamespace() + "/" + v.GetService().GetHostname()
	case *securitypb.Authorization:
		return v.GetNamespace() + "/" + v.GetName()
	}
	panic(fmt.Sprintf("%T", m))
}

func res(t *testing.T, m proto.Message, version string) *discoveryv3.Resource {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &discoveryv3.Resource{Name: resourceName(m), Version: version, Resource: a}
}

func addrResp(nonce string, removed []string, rs ...*discoveryv3.Resource) *discoveryv3.DeltaDiscoveryResponse {
	return &discoveryv3.DeltaDiscoveryResponse{TypeUrl: TypeAddress, Nonce: nonce, SystemVersionInfo: "1", Resources: rs, RemovedResources: removed}
}

func authzResp(nonce string, removed []string, rs ...*discoveryv3.Resource) *discoveryv3.DeltaDiscoveryResponse {
	return &discoveryv3.DeltaDiscoveryResponse{TypeUrl: TypeAuthorization, Nonce: nonce, SystemVersionInfo: "1", Resources: rs, RemovedResources: removed}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// The client introduces itself as Istio's ztunnel does and subscribes to
// everything of both types, saying it holds nothing yet.
func TestOpensWithNodeAndWildcardSubscriptions(t *testing.T) {
	h := newHarness(t)
	st := h.nextStream()
	addr, authz := h.handshake(st)
	h.logs.waitFor(t, logOpen)

	node := addr.GetNode()
	if node.GetId() != "ztunnel~node-a" {
		t.Errorf("node id %q", node.GetId())
	}
	md := node.GetMetadata().GetFields()
	if md["NODE_NAME"].GetStringValue() != "node-a" || md["COMPONENT"].GetStringValue() != "ztunnel" || md["VERSION"].GetStringValue() != "1.2.3" {
		t.Errorf("node metadata %v", md)
	}
	for _, r := range []*discoveryv3.DeltaDiscoveryRequest{addr, authz} {
		if !slices.Equal(r.GetResourceNamesSubscribe(), []string{"*"}) || len(r.GetResourceNamesUnsubscribe()) != 0 {
			t.Errorf("%s: not a wildcard subscription: %v", r.GetTypeUrl(), r.GetResourceNamesSubscribe())
		}
		if len(r.GetInitialResourceVersions()) != 0 || r.GetResponseNonce() != "" || r.GetErrorDetail() != nil {
			t.Errorf("%s: a first request of an empty client: %v", r.GetTypeUrl(), r)
		}
	}
	if s := h.client.Status(); !s.Connected || s.ACKs != 0 || s.NACKs != 0 || s.LastError != "" {
		t.Errorf("status %+v", s)
	}
	if isClosed(h.client.Synced()) {
		t.Error("synced before anything arrived")
	}
}

// Responses land in the store and are ACKed with their nonce; the client
// is synced once both types arrived.
func TestAppliesAndACKs(t *testing.T) {
	h := newHarness(t)
	st := h.nextStream()
	h.handshake(st)

	a := h.send(st, addrResp("a-1", nil,
		res(t, workload("demo", "a", "10.0.0.1"), "va1"),
		res(t, workload("demo", "b", "fd00::2"), "vb1"),
		res(t, service("demo", "echo", "10.96.0.10"), "vs1"),
	))
	if a.GetErrorDetail() != nil || a.GetNode() != nil || len(a.GetResourceNamesSubscribe()) != 0 || len(a.GetInitialResourceVersions()) != 0 {
		t.Fatalf("ACK %v", a)
	}
	if w, ok := h.store.WorkloadByIP(netip.MustParseAddr("fd00::2")); !ok || w.Name != "b" {
		t.Fatalf("workload b: %v", w)
	}
	if svc, ok := h.store.ServiceByVIP(netip.MustParseAddr("10.96.0.10")); !ok || svc.Key != "demo/echo.demo.svc.cluster.local" {
		t.Fatalf("service: %v", svc)
	}
	if isClosed(h.client.Synced()) {
		t.Fatal("synced with addresses only")
	}

	h.ack(st, authzResp("p-1", nil, res(t, policy("demo", "allow-web", 8080), "vp1")))
	// The ACK is sent after the response is applied: synced by now.
	if !isClosed(h.client.Synced()) {
		t.Fatal("not synced after both types")
	}
	w, _ := h.store.WorkloadByUID("Kubernetes//Pod/demo/a")
	if ps := h.store.Policies(w); len(ps) != 1 || ps[0].Key() != "demo/allow-web" {
		t.Fatalf("policies %v", ps)
	}
	if v := h.store.Versions(true); !maps.Equal(v, map[string]string{
		"Kubernetes//Pod/demo/a": "va1", "Kubernetes//Pod/demo/b": "vb1", "demo/echo.demo.svc.cluster.local": "vs1",
	}) {
		t.Fatalf("versions %v", v)
	}

	// An empty response (what xds answers a subscription with when there is
	// nothing) is ACKed too.
	h.ack(st, authzResp("p-2", nil))
	if s := h.client.Status(); !s.Connected || s.ACKs != 3 || s.NACKs != 0 {
		t.Fatalf("status %+v", s)
	}
}

// A response that does not decode is NACKed with the resource and field in
// error_detail, and changes nothing; the stream goes on.
func TestNACKsBadResponseKeepsState(t *testing.T) {
	h := newHarness(t)
	st := h.nextStream()
	h.handshake(st)
	h.ack(st, addrResp("a-1", nil,
		res(t, workload("demo", "a", "10.0.0.1"), "va1"),
		res(t, service("demo", "echo", "10.96.0.10"), "vs1"),
	))
	h.ack(st, authzResp("p-1", nil, res(t, policy("demo", "p", 8080), "vp1")))
	addrVersions, authzVersions, counts := h.store.Versions(true), h.store.Versions(false), h.store.Counts()

	good := res(t, workload("demo", "c", "10.0.0.3"), "vc1")
	garbage := &discoveryv3.Resource{Name: "Kubernetes//Pod/demo/garbage", Version: "x",
		Resource: &anypb.Any{TypeUrl: TypeAddress, Value: []byte{0x0a, 0xff, 0xff}}}
	fiveBytes := res(t, workload("demo", "five", "10.0.0.5", func(w *workloadpb.Workload) { w.Addresses = [][]byte{{10, 0, 0, 5, 5}} }), "x")
	wrongType := res(t, policy("demo", "q"), "x")
	wrongType.Name = "Kubernetes//Pod/demo/wrongtype"
	noBody := &discoveryv3.Resource{Name: "Kubernetes//Pod/demo/nobody", Version: "x"}
	bigPort := res(t, policy("demo", "big", 8080, 70000), "x")

	cases := []struct {
		name  string
		resp  *discoveryv3.DeltaDiscoveryResponse
		wants []string
	}{
		{"bytes that are no Address", addrResp("bad-1", []string{"Kubernetes//Pod/demo/a"}, good, garbage),
			[]string{`"Kubernetes//Pod/demo/garbage"`}},
		{"a workload address of 5 bytes", addrResp("bad-2", []string{"Kubernetes//Pod/demo/a"}, good, fiveBytes),
			[]string{`"Kubernetes//Pod/demo/five"`, "workload.addresses[0]", "5 bytes"}},
		{"an Authorization in an Address response", addrResp("bad-3", nil, good, wrongType),
			[]string{`"Kubernetes//Pod/demo/wrongtype"`, "istio.security.Authorization"}},
		{"a resource without body", addrResp("bad-4", nil, good, noBody),
			[]string{`"Kubernetes//Pod/demo/nobody"`, "no body"}},
		{"a port above 65535 in a policy", authzResp("bad-5", []string{"demo/p"}, res(t, policy("demo", "new", 80), "x"), bigPort),
			[]string{`"demo/big"`, "destination_ports[1]"}},
		{"a type nobody asked for", &discoveryv3.DeltaDiscoveryResponse{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", Nonce: "bad-6"},
			[]string{"unexpected type", "envoy.config.cluster.v3.Cluster"}},
	}
	for i, c := range cases {
		changed := h.store.Changed()
		nack := h.send(st, c.resp)
		d := nack.GetErrorDetail()
		if d == nil {
			t.Fatalf("%s: ACKed", c.name)
		}
		if codes.Code(d.GetCode()) != codes.InvalidArgument {
			t.Errorf("%s: code %v", c.name, codes.Code(d.GetCode()))
		}
		for _, w := range c.wants {
			if !strings.Contains(d.GetMessage(), w) {
				t.Errorf("%s: error_detail %q does not say %q", c.name, d.GetMessage(), w)
			}
		}
		if isClosed(changed) {
			t.Errorf("%s: the store changed", c.name)
		}
		if !maps.Equal(h.store.Versions(true), addrVersions) || !maps.Equal(h.store.Versions(false), authzVersions) || h.store.Counts() != counts {
			t.Fatalf("%s: the store changed: %v %v", c.name, h.store.Versions(true), h.store.Versions(false))
		}
		if s := h.client.Status(); !s.Connected || s.NACKs != int64(i+1) || s.ACKs != 2 {
			t.Errorf("%s: status %+v", c.name, s)
		}
	}
	// The stream still works.
	h.ack(st, addrResp("a-2", nil, good))
	if _, ok := h.store.WorkloadByIP(netip.MustParseAddr("10.0.0.3")); !ok {
		t.Fatal("a good response after NACKs was not applied")
	}
}

// A type counts as received only once a response of it was accepted.
func TestNotSyncedByNACKedResponse(t *testing.T) {
	h := newHarness(t)
	st := h.nextStream()
	h.handshake(st)
	bad := addrResp("a-1", nil, res(t, workload("demo", "a", "10.0.0.1", func(w *workloadpb.Workload) { w.Uid = "" }), "x"))
	if r := h.send(st, bad); r.GetErrorDetail() == nil || !strings.Contains(r.GetErrorDetail().GetMessage(), "workload.uid") {
		t.Fatalf("answer %v", r)
	}
	h.ack(st, authzResp("p-1", nil))
	if isClosed(h.client.Synced()) {
		t.Fatal("synced though the addresses were NACKed")
	}
	h.ack(st, addrResp("a-2", nil, res(t, workload("demo", "a", "10.0.0.1"), "va1")))
	if !isClosed(h.client.Synced()) {
		t.Fatal("not synced")
	}
}

func TestRemovedResources(t *testing.T) {
	h := newHarness(t)
	st := h.nextStream()
	h.handshake(st)
	h.ack(st, addrResp("a-1", nil,
		res(t, workload("demo", "a", "10.0.0.1"), "va1"),
		res(t, workload("demo", "b", "10.0.0.2"), "vb1"),
		res(t, service("demo", "echo", "10.96.0.10"), "vs1"),
	))
	h.ack(st, authzResp("p-1", nil, res(t, policy("demo", "p1", 80), "v1"), res(t, policy("demo", "p2", 80), "v1")))

	h.ack(st, addrResp("a-2", []string{"Kubernetes//Pod/demo/a", "demo/echo.demo.svc.cluster.local", "never/held"}))
	h.ack(st, authzResp("p-2", []string{"demo/p1"}))
	if _, ok := h.store.WorkloadByIP(netip.MustParseAddr("10.0.0.1")); ok {
		t.Error("removed workload still held")
	}
	if _, ok := h.store.ServiceByVIP(netip.MustParseAddr("10.96.0.10")); ok {
		t.Error("removed service still held")
	}
	if v := h.store.Versions(true); !maps.Equal(v, map[string]string{"Kubernetes//Pod/demo/b": "vb1"}) {
		t.Errorf("address versions %v", v)
	}
	if v := h.store.Versions(false); !maps.Equal(v, map[string]string{"demo/p2": "v1"}) {
		t.Errorf("authorization versions %v", v)
	}
	// Removal and update in one response.
	h.ack(st, addrResp("a-3", []string{"Kubernetes//Pod/demo/b"}, res(t, workload("demo", "c", "10.0.0.3"), "vc1")))
	if c := h.store.Counts(); c.Workloads != 1 || c.Services != 0 || c.Policies != 1 {
		t.Errorf("counts %+v", c)
	}
}

// When the stream breaks the client keeps everything, and on the next
// stream tells xds what it holds (initial_resource_versions), so a replica
// restart re-sends nothing that did not change.
func TestResumesWithInitialResourceVersions(t *testing.T) {
	h := newHarness(t)
	st := h.nextStream()
	h.handshake(st)
	h.ack(st, addrResp("a-1", nil,
		res(t, workload("demo", "a", "10.0.0.1"), "va1"),
		res(t, workload("demo", "b", "10.0.0.2"), "vb1"),
		res(t, service("demo", "echo", "10.96.0.10"), "vs1"),
	))
	h.ack(st, authzResp("p-1", nil, res(t, policy("demo", "p", 80), "vp1")))
	h.ack(st, addrResp("a-2", nil, res(t, workload("demo", "a", "10.0.0.1"), "va2")))
	// A NACKed version is not held, so it is not claimed either.
	if r := h.send(st, addrResp("a-3", nil, res(t, workload("demo", "b", "10.0.0.2", func(w *workloadpb.Workload) { w.Addresses = [][]byte{{1}} }), "vb2"))); r.GetErrorDetail() == nil {
		t.Fatal("ACKed a bad workload")
	}
	wantAddr := map[string]string{"Kubernetes//Pod/demo/a": "va2", "Kubernetes//Pod/demo/b": "vb1", "demo/echo.demo.svc.cluster.local": "vs1"}
	wantAuthz := map[string]string{"demo/p": "vp1"}
	changed := h.store.Changed()

	st.end <- grpcstatus.Error(codes.Unavailable, "xds replica shutting down")
	h.logs.waitFor(t, logEnded)
	s := h.client.Status()
	if s.Connected || !strings.Contains(s.LastError, "xds replica shutting down") || s.ACKs != 3 || s.NACKs != 1 {
		t.Errorf("status while disconnected %+v", s)
	}
	// Nothing is cleared while disconnected.
	if !maps.Equal(h.store.Versions(true), wantAddr) || !maps.Equal(h.store.Versions(false), wantAuthz) || isClosed(changed) {
		t.Fatalf("the store changed while disconnected: %v %v", h.store.Versions(true), h.store.Versions(false))
	}

	st2 := h.nextStream()
	addr, authz := h.handshake(st2)
	if addr.GetNode().GetId() != "ztunnel~node-a" {
		t.Errorf("the new stream does not start with the node: %v", addr.GetNode())
	}
	if got := addr.GetInitialResourceVersions(); !maps.Equal(got, wantAddr) {
		t.Errorf("address initial_resource_versions %v, want %v", got, wantAddr)
	}
	if got := authz.GetInitialResourceVersions(); !maps.Equal(got, wantAuthz) {
		t.Errorf("authorization initial_resource_versions %v, want %v", got, wantAuthz)
	}
	for _, r := range []*discoveryv3.DeltaDiscoveryRequest{addr, authz} {
		if !slices.Equal(r.GetResourceNamesSubscribe(), []string{"*"}) || r.GetResponseNonce() != "" {
			t.Errorf("%s: %v", r.GetTypeUrl(), r)
		}
	}
	h.logs.waitFor(t, logOpen)
	if s := h.client.Status(); !s.Connected {
		t.Errorf("status after reconnecting %+v", s)
	}

	// Nothing changed: xds answers with nothing, and the client keeps all.
	h.ack(st2, addrResp("n-1", nil))
	h.ack(st2, authzResp("n-2", nil))
	if !maps.Equal(h.store.Versions(true), wantAddr) || !maps.Equal(h.store.Versions(false), wantAuthz) {
		t.Fatalf("an empty answer after resuming changed the store: %v", h.store.Versions(true))
	}
	// What changed meanwhile comes as a delta.
	h.ack(st2, addrResp("n-3", []string{"Kubernetes//Pod/demo/b"}, res(t, workload("demo", "c", "10.0.0.3"), "vc1")))
	if _, ok := h.store.WorkloadByUID("Kubernetes//Pod/demo/b"); ok {
		t.Error("removed while away, still held")
	}
	if _, ok := h.store.WorkloadByIP(netip.MustParseAddr("10.0.0.3")); !ok {
		t.Error("added while away, not held")
	}
	if s := h.client.Status(); !s.Connected || s.ACKs != 6 || s.NACKs != 1 {
		t.Errorf("status %+v", s)
	}
	if !isClosed(h.client.Synced()) {
		t.Error("no longer synced")
	}
}

// The server goes away altogether (process restart, new listener on the
// same address): the client retries, keeps its state meanwhile, and
// resumes on the new server.
func TestServerRestart(t *testing.T) {
	h := newHarness(t)
	st := h.nextStream()
	h.handshake(st)
	h.ack(st, addrResp("a-1", nil, res(t, workload("demo", "a", "10.0.0.1"), "va1")))
	h.ack(st, authzResp("p-1", nil, res(t, policy("demo", "p", 80), "vp1")))

	h.srv.Stop()
	h.logs.waitFor(t, logEnded)
	// At least one retry failed against nothing before the new server
	// comes up.
	h.logs.waitFor(t, logEnded)
	if s := h.client.Status(); s.Connected || s.LastError == "" {
		t.Errorf("status while the server is down %+v", s)
	}
	if _, ok := h.store.WorkloadByIP(netip.MustParseAddr("10.0.0.1")); !ok {
		t.Fatal("state dropped while the server is down")
	}

	ln, err := net.Listen("tcp", h.addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", h.addr, err)
	}
	h.serve(ln)
	st2 := h.nextStream()
	addr, authz := h.handshake(st2)
	if !maps.Equal(addr.GetInitialResourceVersions(), map[string]string{"Kubernetes//Pod/demo/a": "va1"}) ||
		!maps.Equal(authz.GetInitialResourceVersions(), map[string]string{"demo/p": "vp1"}) {
		t.Fatalf("initial_resource_versions %v %v", addr.GetInitialResourceVersions(), authz.GetInitialResourceVersions())
	}
	h.ack(st2, addrResp("b-1", nil))
	if s := h.client.Status(); !s.Connected {
		t.Errorf("status %+v", s)
	}
}

// Run returns nil when its context ends, whether it is streaming or
// waiting to retry, and leaves nothing running (the harness checks
// goroutines).
func TestRunStops(t *testing.T) {
	t.Run("streaming", func(t *testing.T) {
		h := newHarness(t)
		st := h.nextStream()
		h.handshake(st)
		h.ack(st, addrResp("a-1", nil, res(t, workload("demo", "a", "10.0.0.1"), "va1")))
		h.stop()
		// The client's side of the stream ends with it.
		select {
		case _, ok := <-st.reqs:
			if ok {
				t.Fatal("a request after Run returned")
			}
		case <-time.After(waitLimit):
			t.Fatal("the stream outlived Run")
		}
	})
	t.Run("retrying", func(t *testing.T) {
		h := newHarness(t)
		st := h.nextStream()
		h.handshake(st)
		h.srv.Stop()
		h.logs.waitFor(t, logEnded)
		h.stop()
	})
	t.Run("never connected", func(t *testing.T) {
		ignore := goleak.IgnoreCurrent()
		defer goleak.VerifyNone(t, ignore)
		// Nothing listens there.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		logs := newLogSink()
		c := New(Options{Conn: conn, Store: mesh.New(), Node: "n", Logger: slog.New(logs), RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		logs.waitFor(t, logEnded)
		if s := c.Status(); s.Connected || s.LastError == "" {
			t.Errorf("status %+v", s)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(waitLimit):
			t.Fatal("Run did not return")
		}
		if isClosed(c.Synced()) {
			t.Error("synced without a server")
		}
	})
}

// Status may be read while the client works (run with -race).
func TestStatusDuringUpdates(t *testing.T) {
	h := newHarness(t)
	st := h.nextStream()
	h.handshake(st)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_ = h.client.Status()
				_ = h.store.Versions(true)
			}
		}
	}()
	for i := range 50 {
		h.ack(st, addrResp(fmt.Sprintf("a-%d", i), nil, res(t, workload("demo", "a", "10.0.0.1"), fmt.Sprint(i))))
	}
	close(stop)
	readers.Wait()
	if s := h.client.Status(); s.ACKs != 50 {
		t.Fatalf("status %+v", s)
	}
}
