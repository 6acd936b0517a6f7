//lint:file-ignore SA1019 HBONE drives golang.org/x/net/http2 directly (DESIGN §11) for per-connection ServeConn/NewClientConn on our own TLS conns; moving to net/http's HTTP/2 API of Go 1.26 is a follow-up.

package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

func workload(t testing.TB, ns, sa string) spiffe.Identity {
	id, err := spiffe.NewWorkload(td, ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// fixture is a destination ztunnel: a TLS listener serving HBONE with the
// destination workload's certificate, and an echo app it tunnels to.
type fixture struct {
	t testing.TB
	// sink, when set, serves app connections instead of the echo.
	sink   func(net.Conn)
	ca     *spiffetest.CA
	dstID  spiffe.Identity
	ln     net.Listener
	app    net.Listener
	appErr atomic.Int32
	// decide is the handler's authorization hook (nil: allow).
	decide func(Request) (int, error)
	got    chan Request
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{t: t, ca: spiffetest.NewCA(t, td), dstID: workload(t, "ns-b", "sa-b"), got: make(chan Request, 64)}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	var err error
	if f.app, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if f.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	f.wg.Go(f.serveApp)
	f.wg.Go(f.serveHBONE)
	t.Cleanup(func() { f.cancel(); f.ln.Close(); f.app.Close(); f.wg.Wait() })
	return f
}

// serveApp echoes; after the peer's EOF it writes "bye" and closes, so
// half-close is observable.
func (f *fixture) serveApp() {
	for {
		c, err := f.app.Accept()
		if err != nil {
			return
		}
		if f.sink != nil {
			f.wg.Go(func() { defer c.Close(); f.sink(c) })
			continue
		}
		f.wg.Go(func() {
			defer c.Close()
			if _, err := io.Copy(c, c); err != nil {
				f.appErr.Add(1)
			}
			_, _ = c.Write([]byte("bye"))
		})
	}
}

func (f *fixture) serveHBONE() {
	srv := NewServer(ServerOptions{})
	src := f.ca.Source(f.t, f.dstID)
	cfg := ServerTLS(src, td)
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Go(func() {
			defer c.Close()
			tc := tls.Server(c, cfg)
			if err := tc.HandshakeContext(f.ctx); err != nil {
				return
			}
			srv.ServeConn(f.ctx, tc, func(ctx context.Context, req Request) (net.Conn, int, error) {
				select {
				case f.got <- req:
				default: // benchmarks open more tunnels than anyone reads
				}
				if f.decide != nil {
					if st, err := f.decide(req); err != nil {
						return nil, st, err
					}
				}
				var d net.Dialer
				up, err := d.DialContext(ctx, "tcp", f.app.Addr().String())
				if err != nil {
					return nil, http.StatusServiceUnavailable, err
				}
				return up, 0, nil
			}, nil)
		})
	}
}

// testDialer dials the fixture with the source identity of each key.
type testDialer struct {
	f     *fixture
	addr  string
	dials atomic.Int32
	dstID spiffe.Identity
}

func (d *testDialer) DialTCP(ctx context.Context, k Key) (net.Conn, error) {
	d.dials.Add(1)
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", d.addr)
}

func (d *testDialer) TLSConfig(_ context.Context, k Key) (*tls.Config, error) {
	id, err := spiffe.Parse(k.SrcID)
	if err != nil {
		return nil, err
	}
	return ClientTLS(d.f.ca.Source(d.f.t, id), d.dstID), nil
}

func (f *fixture) pool(t testing.TB) (*Pool, *testDialer) {
	d := &testDialer{f: f, addr: f.ln.Addr().String(), dstID: f.dstID}
	p := NewPool(PoolOptions{Dialer: d})
	t.Cleanup(p.Close)
	return p, d
}

func (f *fixture) key(pod string) Key {
	return Key{SrcPod: pod, SrcIP: netip.MustParseAddr("127.0.0.1"), SrcID: workload(f.t, "ns-a", "sa-a").String(),
		DstID: f.dstID.String(), DstAddr: netip.MustParseAddrPort(f.ln.Addr().String())}
}

var target = netip.MustParseAddrPort("10.0.0.9:8080")

func TestRoundTripAndHalfClose(t *testing.T) {
	f := newFixture(t)
	p, _ := f.pool(t)
	c, err := p.Dial(context.Background(), f.key("pod-a"), target, Headers{Source: netip.MustParseAddrPort("10.0.0.1:40000")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := <-f.got
	if req.Target != target || req.Forwarded != netip.MustParseAddrPort("10.0.0.1:40000") {
		t.Fatalf("request %+v", req)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4<<20) // 64 MiB
	var wg sync.WaitGroup
	var got []byte
	var rerr error
	wg.Go(func() { got, rerr = io.ReadAll(c) })
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if rerr != nil {
		t.Fatal(rerr)
	}
	if !bytes.Equal(got[:len(got)-3], payload) || string(got[len(got)-3:]) != "bye" {
		t.Fatalf("echo of %d bytes came back as %d bytes", len(payload), len(got))
	}
}

// Tunnels of one key share a connection; another source pod with the same
// identity gets its own (DESIGN §5).
func TestPoolingPerKey(t *testing.T) {
	f := newFixture(t)
	p, d := f.pool(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			c, err := p.Dial(context.Background(), f.key("pod-a"), target, Headers{})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if _, err := c.Write([]byte("x")); err != nil {
				t.Error(err)
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := d.dials.Load(); n != 1 {
		t.Fatalf("20 tunnels of one key used %d connections", n)
	}
	c, err := p.Dial(context.Background(), f.key("pod-a2"), target, Headers{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := d.dials.Load(); n != 2 {
		t.Fatalf("a second source pod with the same identity shared a connection (%d dials)", n)
	}
	for range len(f.got) {
		<-f.got
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	p, _ := f.pool(t)
	f.decide = func(r Request) (int, error) {
		if r.Target.Port() == 9001 {
			return http.StatusUnauthorized, errors.New("denied by policy")
		}
		return 0, nil
	}
	_, err := p.Dial(context.Background(), f.key("pod-a"), netip.MustParseAddrPort("10.0.0.9:9001"), Headers{})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Fatalf("denied: %v", err)
	}
	f.app.Close() // the app is gone: 503
	_, err = p.Dial(context.Background(), f.key("pod-a"), target, Headers{})
	if !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("upstream down: %v", err)
	}
}

// Malformed requests are answered 400 without reaching the handler.
func TestMalformedRequestsGet400(t *testing.T) {
	f := newFixture(t)
	src := f.ca.Source(t, workload(t, "ns-a", "sa-a"))
	raw, err := tls.Dial("tcp", f.ln.Addr().String(), spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(f.dstID), spiffe.WithHBONE()))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := (&http2.Transport{}).NewClientConn(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for _, tc := range []struct{ method, authority string }{
		{"GET", "10.0.0.9:8080"},
		{"CONNECT", "example.com:443"},
		{"CONNECT", "10.0.0.9"},
		{"CONNECT", "10.0.0.9:0"},
		{"CONNECT", "127.0.0.1:22"},
	} {
		req := &http.Request{Method: tc.method, URL: &url.URL{Host: tc.authority}, Host: tc.authority, Header: http.Header{}, Body: http.NoBody}
		if tc.method != "CONNECT" {
			req.URL = &url.URL{Scheme: "https", Host: tc.authority, Path: "/"}
		}
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.authority, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s: status %d, want 400", tc.method, tc.authority, resp.StatusCode)
		}
	}
	if len(f.got) != 0 {
		t.Fatalf("a malformed request reached the handler")
	}
}

// Only workload identities of the trust domain may open tunnels, and the
// client accepts only the destination it expects.
func TestPeerIdentityChecks(t *testing.T) {
	f := newFixture(t)
	node, _ := spiffe.NewNode(td, "node-x")
	foreignCA := spiffetest.NewCA(t, spiffeid.RequireTrustDomainFromString("evil.example"))
	foreignID, _ := spiffe.NewWorkload(spiffeid.RequireTrustDomainFromString("evil.example"), "ns-a", "sa-a")
	foreignSrc := foreignCA.Source(t, foreignID)
	_ = foreignSrc.SetBundles(foreignCA.Bundle(), f.ca.Bundle())
	noCert, err := spiffe.NewSource(nil, f.ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]spiffe.X509Source{
		"node identity":  f.ca.Source(t, node),
		"foreign domain": foreignSrc,
		"no certificate": noCert,
	} {
		c, err := tls.Dial("tcp", f.ln.Addr().String(), spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(f.dstID), spiffe.WithHBONE()))
		if err == nil {
			// TLS 1.3: the server's verdict on the client certificate
			// arrives with the first read.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		// Accepted would mean the server waits for HTTP/2 and the read
		// times out; refused is an error from the handshake or an alert.
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	// A client pinning another destination refuses the server.
	d := &testDialer{f: f, addr: f.ln.Addr().String(), dstID: workload(t, "ns-b", "someone-else")}
	p := NewPool(PoolOptions{Dialer: d})
	defer p.Close()
	if _, err := p.Dial(context.Background(), f.key("pod-a"), target, Headers{}); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("wrong server identity: %v", err)
	}
}

func TestParseRequest(t *testing.T) {
	mk := func(method, host, path string, hdr map[string]string) *http.Request {
		r := &http.Request{Method: method, Host: host, URL: &url.URL{Host: host, Path: path}, Header: http.Header{}}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return r
	}
	ok := []struct {
		r    *http.Request
		want Request
	}{
		{mk("CONNECT", "10.1.2.3:80", "", nil), Request{Target: netip.MustParseAddrPort("10.1.2.3:80")}},
		{mk("CONNECT", "[fd00::1]:443", "", map[string]string{"Forwarded": `for="[fd00::2]:5000"`}),
			Request{Target: netip.MustParseAddrPort("[fd00::1]:443"), Forwarded: netip.MustParseAddrPort("[fd00::2]:5000")}},
		{mk("CONNECT", "10.1.2.3:80", "", map[string]string{"Forwarded": "for=10.0.0.7", "Baggage": "k=v", "Traceparent": "00-ab-cd-01"}),
			Request{Target: netip.MustParseAddrPort("10.1.2.3:80"), Forwarded: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.7"), 0), Baggage: "k=v", Traceparent: "00-ab-cd-01"}},
	}
	for _, tc := range ok {
		got, err := ParseRequest(tc.r)
		if err != nil || got != tc.want {
			t.Errorf("%s %s: got %+v, %v; want %+v", tc.r.Method, tc.r.Host, got, err, tc.want)
		}
	}
	for name, r := range map[string]*http.Request{
		"GET":          mk("GET", "10.1.2.3:80", "", nil),
		"path":         mk("CONNECT", "10.1.2.3:80", "/x", nil),
		"hostname":     mk("CONNECT", "svc.local:80", "", nil),
		"no port":      mk("CONNECT", "10.1.2.3", "", nil),
		"port 0":       mk("CONNECT", "10.1.2.3:0", "", nil),
		"loopback":     mk("CONNECT", "127.0.0.1:80", "", nil),
		"unspecified":  mk("CONNECT", "0.0.0.0:80", "", nil),
		"bad forward":  mk("CONNECT", "10.1.2.3:80", "", map[string]string{"Forwarded": "for=notanip"}),
		"huge header":  mk("CONNECT", "10.1.2.3:80", "", map[string]string{"Baggage": strings.Repeat("a", maxHeaderLen+1)}),
		"long forward": mk("CONNECT", "10.1.2.3:80", "", map[string]string{"Forwarded": strings.Repeat("for=1.2.3.4,", 40)}),
	} {
		if _, err := ParseRequest(r); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
}

// FuzzParseRequest: the inbound HBONE request is the first thing a peer
// controls. Parsing never panics, and anything accepted names a literal,
// routable unicast ip:port.
func FuzzParseRequest(f *testing.F) {
	f.Add("CONNECT", "10.1.2.3:80", "", `for="10.0.0.1:1234"`, "")
	f.Add("CONNECT", "[fd00::1]:443", "", "", "k=v")
	f.Add("GET", "10.1.2.3:80", "/", "", "")
	f.Add("CONNECT", "svc.cluster.local:80", "", "", "")
	f.Add("CONNECT", "127.0.0.1:22", "", "for=[::1]", "")
	f.Fuzz(func(t *testing.T, method, authority, path, forwarded, baggage string) {
		r := &http.Request{Method: method, Host: authority, URL: &url.URL{Host: authority, Path: path}, Header: http.Header{}}
		if forwarded != "" {
			r.Header.Set("Forwarded", forwarded)
		}
		if baggage != "" {
			r.Header.Set("Baggage", baggage)
		}
		req, err := ParseRequest(r)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error not wrapping ErrBadRequest: %v", err)
			}
			return
		}
		a := req.Target.Addr()
		if req.Target.Port() == 0 || !a.IsValid() || a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
			t.Fatalf("accepted target %v from %q", req.Target, authority)
		}
	})
}
