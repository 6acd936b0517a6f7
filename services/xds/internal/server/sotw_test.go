package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ambitmesh/ambit/services/xds/internal/server"
)

type sotwClient struct {
	t      testing.TB
	stream grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	resps  chan *discovery.DiscoveryResponse
	errc   chan error
	node   *corev3.Node
}

func openSotW(t testing.TB, conn *grpc.ClientConn, node *corev3.Node) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &sotwClient{t: t, stream: stream, resps: make(chan *discovery.DiscoveryResponse, 64), errc: make(chan error, 1), node: node}
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
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func (c *sotwClient) send(req *discovery.DiscoveryRequest) {
	c.t.Helper()
	req.Node = c.node
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *sotwClient) recv() *discovery.DiscoveryResponse {
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

func bodies(t testing.TB, r *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		var s wrapperspb.StringValue
		if err := a.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.GetValue())
	}
	slices.Sort(out)
	return out
}

// TestSotW: state-of-the-world subscribe, ACK, update (full state), NACK
// without resend, explicit names and stale nonces.
func TestSotW(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.cache.Apply(10, upsert(addressType, res("a", "1", "ip-a"), res("b", "1")), upsert(authzType, res("p", "1"), res("q", "1")))
	c := openSotW(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))

	c.send(&discovery.DiscoveryRequest{TypeUrl: addressType})
	r := c.recv()
	check(t, "wildcard", bodies(t, r), []string{"a@1", "b@1"})
	if r.GetVersionInfo() != "10" {
		t.Fatalf("version %q", r.GetVersionInfo())
	}
	c.send(&discovery.DiscoveryRequest{TypeUrl: addressType, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})

	c.send(&discovery.DiscoveryRequest{TypeUrl: authzType, ResourceNames: []string{"q"}})
	ra := c.recv()
	check(t, "explicit", bodies(t, ra), []string{"q@1"})
	c.send(&discovery.DiscoveryRequest{TypeUrl: authzType, VersionInfo: ra.GetVersionInfo(), ResponseNonce: ra.GetNonce(), ResourceNames: []string{"q"}})
	waitFor(t, "acked", ackedRevision(h, "ztunnel~n1", 10))

	// An update sends the whole state of the type.
	h.cache.Apply(11, upsert(addressType, res("b", "2")))
	r = c.recv()
	check(t, "update", bodies(t, r), []string{"a@1", "b@2"})
	c.send(&discovery.DiscoveryRequest{TypeUrl: addressType, VersionInfo: "10", ResponseNonce: r.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "b is bad"}})
	waitFor(t, "nack recorded", func() error {
		p, err := h.proxy("ztunnel~n1")
		if err != nil {
			return err
		}
		if p.NackedRevision != 11 || p.NackError != "b is bad" {
			return fmt.Errorf("%+v", p)
		}
		return nil
	})
	// Not resent: the next response is the next change (to the explicitly
	// watched authorization, whose request also changes its names).
	c.send(&discovery.DiscoveryRequest{TypeUrl: authzType, VersionInfo: ra.GetVersionInfo(), ResponseNonce: ra.GetNonce(), ResourceNames: []string{"p", "q"}})
	ra = c.recv()
	if ra.GetTypeUrl() != authzType {
		t.Fatalf("got %s after a NACK, want the authorization answer", ra.GetTypeUrl())
	}
	check(t, "names changed", bodies(t, ra), []string{"p@1", "q@1"})
	// A stale nonce is ignored: no response to it.
	c.send(&discovery.DiscoveryRequest{TypeUrl: authzType, ResponseNonce: "stale", ResourceNames: []string{"p"}})
	h.cache.Apply(12, upsert(addressType, res("b", "3")))
	r = c.recv()
	if r.GetTypeUrl() != addressType {
		t.Fatalf("stale request answered: %s", r.GetTypeUrl())
	}
	check(t, "fixed", bodies(t, r), []string{"a@1", "b@3"})
}

// TestDebugEndpoints: /debug/syncz lists the proxies with their state and
// /debug/config_dump shows what one was given.
func TestDebugEndpoints(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.cache.Apply(7, upsert(addressType, res("a", "1", "ip-a"), res("b", "1")), upsert(authzType, res("p", "1")))
	c := openDelta(t, h.dial(t, nodeIdentity(t, "n1")), ztunnelNode("n1"))
	c.subscribe(addressType)
	c.ack(c.recv())
	c.subscribe(authzType, "p")
	r := c.recv()
	c.nack(r, "p rejected")
	waitFor(t, "nack", func() error {
		p, err := h.proxy("ztunnel~n1")
		if err != nil || p.NackError == "" {
			return fmt.Errorf("%+v %v", p, err)
		}
		return nil
	})

	srv := httptest.NewServer(http.NewServeMux())
	defer srv.Close()
	mux := srv.Config.Handler.(*http.ServeMux)
	mux.Handle("/debug/syncz", h.srv.SynczHandler())
	mux.Handle("/debug/config_dump", h.srv.ConfigDumpHandler())

	var syncz struct {
		Revision int64              `json:"revision"`
		Proxies  []server.ProxySync `json:"proxies"`
	}
	getJSON(t, srv.URL+"/debug/syncz", &syncz)
	if syncz.Revision != 7 || len(syncz.Proxies) != 1 {
		t.Fatalf("syncz: %+v", syncz)
	}
	p := syncz.Proxies[0]
	if p.ID != "ztunnel~n1" || p.Component != "ztunnel" || p.Version != "v0.1.0-test" || len(p.Types) != 2 ||
		p.NackError != "p rejected" || p.NackedRevision != 7 || !p.Types[1].Wildcard || p.Types[0].Subscriptions != 1 {
		t.Fatalf("syncz proxy: %+v", p)
	}

	var dump struct {
		Proxy string                             `json:"proxy"`
		Types map[string][]server.DumpedResource `json:"types"`
	}
	getJSON(t, srv.URL+"/debug/config_dump?proxy=ztunnel~n1", &dump)
	if len(dump.Types[addressType]) != 2 || len(dump.Types[authzType]) != 1 || dump.Types[authzType][0].Name != "p" {
		t.Fatalf("config dump: %+v", dump)
	}
	var body map[string]any
	if err := json.Unmarshal(dump.Types[authzType][0].Resource, &body); err != nil || body["value"] != "p@1" {
		t.Fatalf("dumped resource %s: %v", dump.Types[authzType][0].Resource, err)
	}
	resp, err := http.Get(srv.URL + "/debug/config_dump?proxy=nobody")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown proxy: %d", resp.StatusCode)
	}
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
