package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/goleak"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	"github.com/ambitmesh/ambit/services/xds/internal/server"
	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

const (
	addressType = "type.googleapis.com/istio.workload.Address"
	authzType   = "type.googleapis.com/istio.security.Authorization"
	waitTimeout = 15 * time.Second
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// res builds a test resource; any message packed in an Any will do for the
// protocol.
func res(name, version string, aliases ...string) *snapshot.Resource {
	body, err := anypb.New(wrapperspb.String(name + "@" + version))
	if err != nil {
		panic(err)
	}
	return &snapshot.Resource{Name: name, Version: version, Body: body, Aliases: aliases}
}

func upsert(url string, rs ...*snapshot.Resource) snapshot.Delta {
	return snapshot.Delta{TypeURL: url, Upserts: rs}
}

func removal(url string, names ...string) snapshot.Delta {
	return snapshot.Delta{TypeURL: url, Removals: names}
}

type harnessOptions struct {
	debounce         time.Duration
	maxResponseBytes int
	cache            *snapshot.Cache
	ca               *spiffetest.CA
	replica          string
	ready            <-chan struct{}
}

// harness is one xds server on a loopback port with real TLS.
type harness struct {
	ca     *spiffetest.CA
	cache  *snapshot.Cache
	srv    *server.Server
	addr   string
	xdsID  spiffe.Identity
	cancel func()
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	ca := o.ca
	if ca == nil {
		ca = spiffetest.NewCA(t, td)
	}
	cache := o.cache
	if cache == nil {
		cache = snapshot.New(snapshot.Options{})
	}
	xdsID, err := spiffe.NewControlPlane(td, spiffe.ComponentXDS)
	if err != nil {
		t.Fatal(err)
	}
	// The handshake admits admins too, so that the xDS-level refusal shows.
	tlsCfg := spiffe.OptionalClientCertServerConfig(ca.Source(t, xdsID), spiffe.AuthorizeMemberOf(td))
	srv, err := server.New(server.Options{
		Cache:            cache,
		Authenticator:    server.Chain{server.CertificateAuthenticator{TrustDomain: td}},
		Debounce:         o.debounce,
		MaxResponseBytes: o.maxResponseBytes,
		ReplicaID:        o.replica,
		Ready:            o.ready,
	})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	h := &harness{ca: ca, cache: cache, srv: srv, addr: lis.Addr().String(), xdsID: xdsID}
	var once sync.Once
	h.cancel = func() {
		once.Do(func() {
			cancel()
			gs.Stop()
			wg.Wait()
		})
	}
	t.Cleanup(h.cancel)
	return h
}

// dial connects as id; a zero identity presents no client certificate.
func (h *harness) dial(t testing.TB, id spiffe.Identity) *grpc.ClientConn {
	t.Helper()
	var src *spiffe.Source
	if id.IsZero() {
		var err error
		if src, err = spiffe.NewSource(nil, h.ca.Bundle()); err != nil {
			t.Fatal(err)
		}
	} else {
		src = h.ca.Source(t, id)
	}
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(
		spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(h.xdsID)))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func nodeIdentity(t testing.TB, node string) spiffe.Identity {
	t.Helper()
	id, err := spiffe.NewNode(td, node)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func ztunnelNode(node string) *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{"COMPONENT": "ztunnel", "VERSION": "v0.1.0-test"})
	return &corev3.Node{Id: "ztunnel~" + node, Metadata: md}
}

// deltaClient is one delta ADS stream read by a background goroutine.
type deltaClient struct {
	t      testing.TB
	stream grpc.BidiStreamingClient[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
	resps  chan *discovery.DeltaDiscoveryResponse
	errc   chan error
	cancel func()
	node   *corev3.Node
	sent   bool
}

func openDelta(t testing.TB, conn *grpc.ClientConn, node *corev3.Node) *deltaClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &deltaClient{t: t, stream: stream, resps: make(chan *discovery.DeltaDiscoveryResponse, 1024), errc: make(chan error, 1), node: node}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := stream.Recv()
			if err != nil {
				c.errc <- err
				return
			}
			select {
			case c.resps <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	c.cancel = func() { cancel(); <-done }
	t.Cleanup(c.cancel)
	return c
}

func (c *deltaClient) send(req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	if !c.sent {
		req.Node = c.node
		c.sent = true
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *deltaClient) subscribe(url string, names ...string) {
	c.t.Helper()
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: url, ResourceNamesSubscribe: names})
}

func (c *deltaClient) recv() *discovery.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.resps:
		return r
	case err := <-c.errc:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(waitTimeout):
		c.t.Fatal("no response in time")
	}
	return nil
}

// recvErr waits for the stream to fail and returns the error.
func (c *deltaClient) recvErr() error {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.t.Fatalf("expected the stream to fail, got a response for %s", r.GetTypeUrl())
	case err := <-c.errc:
		return err
	case <-time.After(waitTimeout):
		c.t.Fatal("stream did not fail in time")
	}
	return nil
}

func (c *deltaClient) ack(r *discovery.DeltaDiscoveryResponse) {
	c.t.Helper()
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
}

func (c *deltaClient) nack(r *discovery.DeltaDiscoveryResponse, msg string) {
	c.t.Helper()
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: msg}})
}

// names lists a response's resources as name@version, sorted.
func names(r *discovery.DeltaDiscoveryResponse) []string {
	var out []string
	for _, x := range r.GetResources() {
		out = append(out, x.GetName()+"@"+x.GetVersion())
	}
	slices.Sort(out)
	return out
}

func check(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) proxy(id string) (server.ProxySync, error) {
	for _, p := range h.srv.Proxies() {
		if p.ID == id {
			return p, nil
		}
	}
	return server.ProxySync{}, errors.New("proxy " + id + " not connected")
}

func ackedRevision(h *harness, id string, rev int64) func() error {
	return func() error {
		p, err := h.proxy(id)
		if err != nil {
			return err
		}
		if p.AckedRevision != rev {
			return fmt.Errorf("acked revision %d, want %d (%+v)", p.AckedRevision, rev, p)
		}
		return nil
	}
}

func gatewayIdentity(t testing.TB) spiffe.Identity {
	t.Helper()
	id, err := spiffe.NewControlPlane(td, spiffe.ComponentGateway)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
