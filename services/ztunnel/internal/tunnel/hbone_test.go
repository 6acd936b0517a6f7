//lint:file-ignore SA1019 the tests drive golang.org/x/net/http2 directly, like the package (DESIGN §11).

package tunnel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
)

// Goroutine leaks are checked package-wide by goleak in TestMain
// (tunnel_test.go); everything below closes what it opens in cleanups.

var (
	hbTD     = spiffeid.RequireTrustDomainFromString("cluster.local")
	hbTarget = netip.MustParseAddrPort("10.0.0.9:8080")
)

// hbGuard bounds how long a step may block before the test fails. It is a
// guard against hangs, never a synchronization.
const hbGuard = 30 * time.Second

func hbWorkload(tb testing.TB, ns, sa string) spiffe.Identity {
	tb.Helper()
	id, err := spiffe.NewWorkload(hbTD, ns, sa)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// hbEnv is a destination ztunnel on loopback: a TCP listener whose
// connections get the TLS handshake of a destination pod's 15008 and then
// Server.ServeConn, with a Handler that dials a local app.
type hbEnv struct {
	tb           testing.TB
	ca           *spiffetest.CA
	srcID, dstID spiffe.Identity
	srv          *Server
	ln, app      net.Listener
	ctx          context.Context
	cancel       context.CancelFunc
	wg           sync.WaitGroup

	// handler replaces the default (dial the app) when set.
	handler atomic.Pointer[Handler]
	// appFn serves each app connection; nil means hbEcho.
	appFn atomic.Pointer[func(net.Conn)]

	calls      atomic.Int32  // Handler invocations
	accepts    atomic.Int32  // TCP connections accepted by the server
	handshakes chan error    // server-side handshake results, in order
	ended      chan struct{} // a server connection ended
	dones      chan hbDone   // Done reports

	mu    sync.Mutex
	conns []net.Conn // server-side TCP connections, for restart
}

type hbDone struct {
	req            Request
	toApp, fromApp int64
	status         int
	err            error
}

func newHBEnv(tb testing.TB) *hbEnv {
	tb.Helper()
	e := &hbEnv{
		tb:         tb,
		ca:         spiffetest.NewCA(tb, hbTD),
		srcID:      hbWorkload(tb, "ns-a", "sa-a"),
		dstID:      hbWorkload(tb, "ns-b", "sa-b"),
		srv:        NewServer(ServerOptions{}),
		handshakes: make(chan error, 64),
		ended:      make(chan struct{}, 64),
		dones:      make(chan hbDone, 1024),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	var err error
	if e.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	if e.app, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	// The destination pod's 15008: its own certificate, only workload
	// identities of the trust domain as peers, TLS 1.3 and h2.
	cfg := spiffe.ServerConfig(e.ca.Source(tb, e.dstID), spiffe.AuthorizeWorkloads(hbTD), spiffe.WithHBONE())
	e.wg.Go(func() { e.serve(cfg) })
	e.wg.Go(e.serveApp)
	tb.Cleanup(func() {
		e.cancel()
		e.ln.Close()
		e.app.Close()
		e.restart()
		e.wg.Wait()
	})
	return e
}

func (e *hbEnv) serve(cfg *tls.Config) {
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.accepts.Add(1)
		e.mu.Lock()
		e.conns = append(e.conns, c)
		e.mu.Unlock()
		e.wg.Go(func() {
			defer func() {
				select {
				case e.ended <- struct{}{}:
				default:
				}
			}()
			defer c.Close()
			tc := tls.Server(c, cfg)
			err := tc.HandshakeContext(e.ctx)
			select {
			case e.handshakes <- err:
			default:
			}
			if err != nil {
				return
			}
			e.srv.ServeConn(e.ctx, tc, e.handle, e.done)
		})
	}
}

func (e *hbEnv) handle(ctx context.Context, req Request) (net.Conn, int, error) {
	e.calls.Add(1)
	if h := e.handler.Load(); h != nil {
		return (*h)(ctx, req)
	}
	return e.dialApp(ctx)
}

func (e *hbEnv) dialApp(ctx context.Context) (net.Conn, int, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", e.app.Addr().String())
	if err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	return c, 0, nil
}

func (e *hbEnv) setHandler(h Handler) { e.handler.Store(&h) }

func (e *hbEnv) setApp(fn func(net.Conn)) { e.appFn.Store(&fn) }

func (e *hbEnv) done(req Request, toApp, fromApp int64, status int, err error) {
	select {
	case e.dones <- hbDone{req, toApp, fromApp, status, err}:
	default:
	}
}

func (e *hbEnv) serveApp() {
	for {
		c, err := e.app.Accept()
		if err != nil {
			return
		}
		fn := hbEcho
		if p := e.appFn.Load(); p != nil {
			fn = *p
		}
		e.wg.Go(func() { defer c.Close(); fn(c) })
	}
}

// restart kills every connection the server holds, as a destination
// ztunnel that restarted would; the listener stays (the new process took
// it over).
func (e *hbEnv) restart() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.conns {
		c.Close()
	}
	e.conns = nil
}

// hbEcho echoes until the peer's EOF, then says "bye" and closes: what the
// client reads after its CloseWrite shows the app saw EOF.
func hbEcho(c net.Conn) {
	_, _ = io.Copy(c, c)
	_, _ = c.Write([]byte("bye"))
}

// hbDrainThenReply reads to EOF and only then answers with the byte count
// and SHA-256 of what it got, and closes.
func hbDrainThenReply(c net.Conn) {
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return
	}
	fmt.Fprintf(c, "%d %x", n, h.Sum(nil))
}

func (e *hbEnv) key(pod string) Key {
	return Key{SrcPod: pod, SrcIP: netip.MustParseAddr("127.0.0.1"), SrcID: e.srcID.String(), DstID: e.dstID.String(),
		DstAddr: netip.MustParseAddrPort(e.ln.Addr().String())}
}

// hbDialer is the Pool's Dialer: TCP to the env's listener, TLS with the
// key's source identity, pinning dstID.
type hbDialer struct {
	addr  string
	dstID spiffe.Identity
	srcs  map[string]*spiffe.Source // by SrcID, minted on the test goroutine

	total atomic.Int32
	mu    sync.Mutex
	byPod map[string]int
	raws  []*hbFlakyConn

	// gate, when set, holds DialTCP until it is closed.
	gate chan struct{}
	// entered is signalled when DialTCP starts.
	entered chan struct{}
}

func (e *hbEnv) dialer(tb testing.TB, pin spiffe.Identity) *hbDialer {
	tb.Helper()
	return &hbDialer{
		addr:  e.ln.Addr().String(),
		dstID: pin,
		srcs:  map[string]*spiffe.Source{e.srcID.String(): e.ca.Source(tb, e.srcID)},
		byPod: map[string]int{},
	}
}

func (d *hbDialer) DialTCP(ctx context.Context, k Key) (net.Conn, error) {
	d.total.Add(1)
	d.mu.Lock()
	d.byPod[k.SrcPod]++
	d.mu.Unlock()
	if d.entered != nil {
		select {
		case d.entered <- struct{}{}:
		default:
		}
	}
	if d.gate != nil {
		select {
		case <-d.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	fc := &hbFlakyConn{Conn: c, closed: make(chan struct{})}
	d.mu.Lock()
	d.raws = append(d.raws, fc)
	d.mu.Unlock()
	return fc, nil
}

func (d *hbDialer) TLSConfig(_ context.Context, k Key) (*tls.Config, error) {
	src, ok := d.srcs[k.SrcID]
	if !ok {
		return nil, fmt.Errorf("no certificate for %s", k.SrcID)
	}
	return ClientTLS(src, d.dstID), nil
}

func (d *hbDialer) dialsOf(pod string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byPod[pod]
}

// dieSilently makes every connection dialed so far dead without the
// client noticing: writes fail and reads never return until Close, as
// when a peer vanished and the read side has not seen it yet.
func (d *hbDialer) dieSilently() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.raws {
		c.dead.Store(true)
	}
}

type hbFlakyConn struct {
	net.Conn
	dead   atomic.Bool
	closed chan struct{}
	once   sync.Once
}

func (c *hbFlakyConn) Read(b []byte) (int, error) {
	if c.dead.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(b)
	if c.dead.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *hbFlakyConn) Write(b []byte) (int, error) {
	if c.dead.Load() {
		return 0, errors.New("connection reset by peer (simulated)")
	}
	return c.Conn.Write(b)
}

func (c *hbFlakyConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (e *hbEnv) pool(tb testing.TB, d *hbDialer) *Pool {
	p := NewPool(PoolOptions{Dialer: d})
	tb.Cleanup(p.Close)
	return p
}

// hbDial opens a tunnel, bounded by hbGuard, closed at cleanup.
func hbDial(tb testing.TB, p *Pool, k Key, target netip.AddrPort, h Headers) net.Conn {
	tb.Helper()
	c, err := hbTryDial(p, k, target, h)
	if err != nil {
		tb.Fatalf("dial %s: %v", target, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func hbTryDial(p *Pool, k Key, target netip.AddrPort, h Headers) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), hbGuard)
	defer cancel()
	return p.Dial(ctx, k, target, h)
}

// hbWithin runs fn and fails the test if it has not returned after
// hbGuard.
func hbWithin(tb testing.TB, what string, fn func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(hbGuard):
		tb.Fatalf("%s: still blocked after %v", what, hbGuard)
	}
}

// hbRecv receives from ch, failing the test after hbGuard.
func hbRecv[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hbGuard):
		tb.Fatalf("%s: nothing after %v", what, hbGuard)
		panic("unreachable")
	}
}

// hbPing writes msg and reads the echo back.
func hbPing(tb testing.TB, c net.Conn, msg string) {
	tb.Helper()
	var err error
	hbWithin(tb, "ping", func() {
		if _, err = c.Write([]byte(msg)); err != nil {
			return
		}
		got := make([]byte, len(msg))
		if _, err = io.ReadFull(c, got); err == nil && string(got) != msg {
			err = fmt.Errorf("echo %q, want %q", got, msg)
		}
	})
	if err != nil {
		tb.Fatalf("ping: %v", err)
	}
}

func hbPayload(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	_, _ = r.Read(b)
	return b
}

// TestHBONEEchoRoundTrip: bytes arrive exactly, both ways, through a
// tunnel; the client's CloseWrite reaches the app as EOF, and the app's
// close reaches the client as EOF after its last bytes. Done reports the
// byte counts.
func TestHBONEEchoRoundTrip(t *testing.T) {
	for _, size := range []int{1, 16<<10 + 3, 4<<20 + 1, 64 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			e := newHBEnv(t)
			p := e.pool(t, e.dialer(t, e.dstID))
			c := hbDial(t, p, e.key("pod-a"), hbTarget, Headers{})
			payload := hbPayload(size, uint64(size))

			werr := make(chan error, 1)
			go func() {
				for off := 0; off < len(payload); off += 1 << 20 {
					if _, err := c.Write(payload[off:min(off+1<<20, len(payload))]); err != nil {
						werr <- err
						return
					}
				}
				werr <- c.(interface{ CloseWrite() error }).CloseWrite()
			}()
			// Compare as it arrives, without a second copy of 64 MiB.
			var off int
			var tail []byte
			var rerr error
			hbWithin(t, "read echo", func() {
				buf := make([]byte, 256<<10)
				for {
					n, err := c.Read(buf)
					for _, b := range buf[:n] {
						if off < len(payload) {
							if b != payload[off] {
								rerr = fmt.Errorf("byte %d is %#x, want %#x", off, b, payload[off])
								return
							}
							off++
						} else {
							tail = append(tail, b)
						}
					}
					if err == io.EOF {
						return
					}
					if err != nil {
						rerr = err
						return
					}
				}
			})
			if rerr != nil {
				t.Fatal(rerr)
			}
			if err := <-werr; err != nil {
				t.Fatalf("write: %v", err)
			}
			if off != len(payload) || string(tail) != "bye" {
				t.Fatalf("got %d of %d bytes then %q, want all then \"bye\"", off, len(payload), tail)
			}
			// The handler ended before the stream did, so its report is in.
			select {
			case d := <-e.dones:
				if d.status != http.StatusOK || d.err != nil || d.toApp != int64(size) || d.fromApp != int64(size+3) || d.req.Target != hbTarget {
					t.Fatalf("done %+v, want 200, %d to the app, %d back", d, size, size+3)
				}
			default:
				t.Fatal("no Done report after the stream ended")
			}
		})
	}
}

// TestHBONEHalfClose: the app reads to EOF before it answers, so the
// answer arriving proves the client's CloseWrite reached it; then the
// client reads the answer and EOF, and can no longer write.
func TestHBONEHalfClose(t *testing.T) {
	e := newHBEnv(t)
	e.setApp(hbDrainThenReply)
	p := e.pool(t, e.dialer(t, e.dstID))
	c := hbDial(t, p, e.key("pod-a"), hbTarget, Headers{})
	payload := hbPayload(3<<20+7, 7)
	var got []byte
	var err error
	hbWithin(t, "half-close", func() {
		if _, err = c.Write(payload); err != nil {
			return
		}
		if err = c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			return
		}
		got, err = io.ReadAll(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d %x", len(payload), sha256.Sum256(payload)); string(got) != want {
		t.Fatalf("app answered %q, want %q", got, want)
	}
	if _, err := c.Write([]byte("late")); err == nil {
		t.Fatal("write after CloseWrite succeeded")
	}
}

// TestHBONEAppClosesFirst: when the app closes while the client still
// sends, the client reads what the app wrote, then EOF, and its writes
// fail instead of blocking once the stream is gone.
func TestHBONEAppClosesFirst(t *testing.T) {
	e := newHBEnv(t)
	e.setApp(func(c net.Conn) {
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err == nil {
			_, _ = c.Write([]byte("world"))
		}
	})
	p := e.pool(t, e.dialer(t, e.dstID))
	c := hbDial(t, p, e.key("pod-a"), hbTarget, Headers{})
	var got []byte
	var err error
	hbWithin(t, "read until EOF", func() {
		if _, err = c.Write([]byte("hello")); err == nil {
			got, err = io.ReadAll(c)
		}
	})
	if err != nil || string(got) != "world" {
		t.Fatalf("read %q, %v; want \"world\" then EOF", got, err)
	}
	var werr error
	hbWithin(t, "writes after the app closed", func() {
		chunk := make([]byte, 32<<10)
		for sent := 0; sent < 256<<20 && werr == nil; sent += len(chunk) {
			_, werr = c.Write(chunk)
		}
	})
	if werr == nil {
		t.Fatal("256 MiB written into a tunnel whose app had closed")
	}
}

// TestHBONEPoolSharing: concurrent tunnels of one key ride one connection
// (DESIGN §5); a key that differs only in the source pod gets its own.
func TestHBONEPoolSharing(t *testing.T) {
	e := newHBEnv(t)
	d := e.dialer(t, e.dstID)
	p := e.pool(t, d)
	const n = 20
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { conns[i], errs[i] = hbTryDial(p, e.key("pod-a"), hbTarget, Headers{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		t.Cleanup(func() { conns[i].Close() })
	}
	// All 20 are open at once; each carries its own bytes.
	for i, c := range conns {
		wg.Go(func() {
			msg := fmt.Sprintf("tunnel-%02d", i)
			if _, err := c.Write([]byte(msg)); err != nil {
				errs[i] = err
				return
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
				errs[i] = fmt.Errorf("read %q, %v", got, err)
			}
		})
	}
	hbWithin(t, "20 round trips", wg.Wait)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
	}
	if got := d.dialsOf("pod-a"); got != 1 || e.accepts.Load() != 1 {
		t.Fatalf("%d concurrent tunnels of one key used %d dials, %d server connections; want 1", n, got, e.accepts.Load())
	}
	if got := e.calls.Load(); got != n {
		t.Fatalf("handler ran %d times, want %d", got, n)
	}

	other := hbDial(t, p, e.key("pod-b"), hbTarget, Headers{})
	hbPing(t, other, "b")
	if d.dialsOf("pod-b") != 1 || d.total.Load() != 2 || e.accepts.Load() != 2 || p.Conns() != 2 {
		t.Fatalf("another source pod with the same identity: %d dials in all, %d accepted, pool holds %d; want 2, 2, 2",
			d.total.Load(), e.accepts.Load(), p.Conns())
	}
	// And pod-a still reuses its own.
	hbPing(t, hbDial(t, p, e.key("pod-a"), hbTarget, Headers{}), "a")
	if d.total.Load() != 2 {
		t.Fatalf("%d dials after reusing pod-a's connection, want 2", d.total.Load())
	}
}

// hbRawClient is an HTTP/2 client connection to the env's server with a
// valid workload certificate, for requests the Pool would never send.
func hbRawClient(t *testing.T, e *hbEnv) *http2.ClientConn {
	t.Helper()
	src := e.ca.Source(t, e.srcID)
	raw, err := tls.Dial("tcp", e.ln.Addr().String(), spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(e.dstID), spiffe.WithHBONE()))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := (&http2.Transport{}).NewClientConn(raw)
	if err != nil {
		raw.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestHBONEMalformedRequests400: what ParseRequest refuses is answered 400
// on the wire without reaching the Handler, and the connection stays
// usable.
func TestHBONEMalformedRequests400(t *testing.T) {
	e := newHBEnv(t)
	cc := hbRawClient(t, e)
	connect := func(authority string) *http.Request {
		return &http.Request{Method: http.MethodConnect, URL: &url.URL{Host: authority}, Host: authority, Header: http.Header{}, Body: http.NoBody}
	}
	forwarded := connect("10.0.0.9:8080")
	forwarded.Header.Set("Forwarded", "for=not-an-address")
	huge := connect("10.0.0.9:8080")
	huge.Header.Set("Baggage", strings.Repeat("x", maxHeaderLen))
	cases := map[string]*http.Request{
		"GET": {Method: http.MethodGet, URL: &url.URL{Scheme: "https", Host: "10.0.0.9:8080", Path: "/"},
			Host: "10.0.0.9:8080", Header: http.Header{}, Body: http.NoBody},
		"POST":                     {Method: http.MethodPost, URL: &url.URL{Scheme: "https", Host: "10.0.0.9:8080", Path: "/"}, Host: "10.0.0.9:8080", Header: http.Header{}, Body: http.NoBody},
		"hostname authority":       connect("svc.ns.svc.cluster.local:8080"),
		"authority without port":   connect("10.0.0.9"),
		"v6 authority, no port":    connect("[fd00::9]"),
		"port 0":                   connect("10.0.0.9:0"),
		"loopback target":          connect("127.0.0.1:22"),
		"v6 loopback target":       connect("[::1]:22"),
		"unspecified target":       connect("0.0.0.0:8080"),
		"forwarded not an address": forwarded,
		"oversized header":         huge,
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			var resp *http.Response
			var err error
			hbWithin(t, "round trip", func() { resp, err = cc.RoundTrip(req.WithContext(context.Background())) })
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
		})
	}
	if got := e.calls.Load(); got != 0 {
		t.Fatalf("%d malformed requests reached the handler", got)
	}
	for range len(cases) {
		if d := hbRecv(t, e.dones, "Done"); d.status != http.StatusBadRequest || !errors.Is(d.err, ErrBadRequest) {
			t.Fatalf("done %+v, want 400 with ErrBadRequest", d)
		}
	}
	// The connection still serves a good tunnel.
	pr, pw := io.Pipe()
	good := connect("10.0.0.9:8080")
	good.Body = pr
	resp, err := cc.RoundTrip(good)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("good CONNECT after the bad ones: %d", resp.StatusCode)
	}
	pw.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || string(got) != "bye" {
		t.Fatalf("read %q, %v", got, err)
	}
	if e.accepts.Load() != 1 {
		t.Fatalf("%d server connections, want 1", e.accepts.Load())
	}
}

// TestHBONEHandlerRefusals: the Handler's status reaches Pool.Dial as a
// *StatusError, and a refusal does not cost the pooled connection.
func TestHBONEHandlerRefusals(t *testing.T) {
	e := newHBEnv(t)
	d := e.dialer(t, e.dstID)
	p := e.pool(t, d)
	refuse := map[uint16]int{1401: http.StatusUnauthorized, 1503: http.StatusServiceUnavailable, 1400: http.StatusBadRequest, 1000: 0, 1200: http.StatusOK}
	e.setHandler(func(ctx context.Context, req Request) (net.Conn, int, error) {
		if st, ok := refuse[req.Target.Port()]; ok {
			return nil, st, fmt.Errorf("refused with %d", st)
		}
		return e.dialApp(ctx)
	})
	for port, want := range map[uint16]int{
		1401: http.StatusUnauthorized,
		1503: http.StatusServiceUnavailable,
		1400: http.StatusBadRequest,
		1000: http.StatusServiceUnavailable, // no status given: upstream failure
		1200: http.StatusServiceUnavailable, // a refusal must never read as 200
	} {
		t.Run(fmt.Sprint(port), func(t *testing.T) {
			c, err := hbTryDial(p, e.key("pod-a"), netip.AddrPortFrom(hbTarget.Addr(), port), Headers{})
			if err == nil {
				c.Close()
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Status != want {
				t.Fatalf("Dial: %v, want *StatusError{%d}", err, want)
			}
			if !strings.Contains(se.Error(), fmt.Sprint(want)) {
				t.Fatalf("message %q does not name the status", se.Error())
			}
			dn := hbRecv(t, e.dones, "Done")
			if dn.status != want || dn.err == nil {
				t.Fatalf("done %+v, want %d with the handler's error", dn, want)
			}
		})
	}
	// The app itself is unreachable: the default handler answers 503.
	e.app.Close()
	e.setHandler(func(ctx context.Context, req Request) (net.Conn, int, error) { return e.dialApp(ctx) })
	_, err := hbTryDial(p, e.key("pod-a"), hbTarget, Headers{})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("app down: %v, want 503", err)
	}
	if d.total.Load() != 1 || p.Conns() != 1 {
		t.Fatalf("refusals cost the connection: %d dials, %d pooled", d.total.Load(), p.Conns())
	}
}

// TestHBONEHandlerNilConn: a Handler that returns neither a connection nor
// an error is answered 503 instead of crashing the stream.
func TestHBONEHandlerNilConn(t *testing.T) {
	e := newHBEnv(t)
	p := e.pool(t, e.dialer(t, e.dstID))
	e.setHandler(func(context.Context, Request) (net.Conn, int, error) { return nil, 0, nil })
	_, err := hbTryDial(p, e.key("pod-a"), hbTarget, Headers{})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("Dial: %v, want 503", err)
	}
}

// TestHBONEStreamResetKeepsConnection: a stream reset by the destination
// (here a handler that aborts) fails that tunnel only; the other tunnels
// of the pooled connection live on.
func TestHBONEStreamResetKeepsConnection(t *testing.T) {
	e := newHBEnv(t)
	d := e.dialer(t, e.dstID)
	p := e.pool(t, d)
	e.setHandler(func(ctx context.Context, req Request) (net.Conn, int, error) {
		if req.Target.Port() == 9999 {
			panic(http.ErrAbortHandler) // RST_STREAM, quietly
		}
		return e.dialApp(ctx)
	})
	live := hbDial(t, p, e.key("pod-a"), hbTarget, Headers{})
	hbPing(t, live, "before")
	_, err := hbTryDial(p, e.key("pod-a"), netip.AddrPortFrom(hbTarget.Addr(), 9999), Headers{})
	var se *StatusError
	if err == nil || errors.As(err, &se) {
		t.Fatalf("Dial to an aborting handler: %v, want a stream error", err)
	}
	hbPing(t, live, "after")
	if d.total.Load() != 1 || p.Conns() != 1 {
		t.Fatalf("a stream reset cost the connection: %d dials, %d pooled", d.total.Load(), p.Conns())
	}
}

// TestHBONETLSRejected: the destination's handshake admits only workload
// identities of its trust domain over TLS 1.3 with h2 (DESIGN §4), and the
// source admits only the destination it pinned.
func TestHBONETLSRejected(t *testing.T) {
	e := newHBEnv(t)
	evilTD := spiffeid.RequireTrustDomainFromString("evil.example")
	foreignCA := spiffetest.NewCA(t, evilTD)
	foreignID, err := spiffe.NewWorkload(evilTD, "ns-a", "sa-a")
	if err != nil {
		t.Fatal(err)
	}
	node, _ := spiffe.NewNode(hbTD, "n")
	xds, _ := spiffe.NewControlPlane(hbTD, spiffe.ComponentXDS)
	admin, _ := spiffe.NewAdmin(hbTD, "ops")
	src := func(ca *spiffetest.CA, id spiffe.Identity, opts ...spiffetest.SVIDOption) *spiffe.Source {
		s, err := spiffe.NewSource(ca.MintSVID(t, id, opts...), e.ca.Bundle(), foreignCA.Bundle())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	noCert, err := spiffe.NewSource(nil, e.ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	hbone := func(s *spiffe.Source) *tls.Config {
		return spiffe.ClientConfig(s, spiffe.AuthorizeIdentity(e.dstID), spiffe.WithHBONE())
	}
	tls12 := hbone(src(e.ca, e.srcID))
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	http11 := spiffe.ClientConfig(src(e.ca, e.srcID), spiffe.AuthorizeIdentity(e.dstID),
		spiffe.WithMinVersion(tls.VersionTLS13), spiffe.WithNextProtos("http/1.1"))

	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		want error // what the server's handshake fails with; nil: any error
		ok   bool
	}{
		{"workload of the trust domain", hbone(src(e.ca, e.srcID)), nil, true},
		{"no certificate", hbone(noCert), nil, false},
		{"foreign trust domain", hbone(src(foreignCA, foreignID)), spiffe.ErrUntrusted, false},
		{"rogue CA of the trust domain", hbone(src(spiffetest.NewCA(t, hbTD), e.srcID)), spiffe.ErrUntrusted, false},
		{"expired certificate", hbone(src(e.ca, e.srcID, spiffetest.Expired())), spiffe.ErrUntrusted, false},
		{"node identity", hbone(src(e.ca, node)), spiffe.ErrUnauthorized, false},
		{"control-plane identity", hbone(src(e.ca, xds)), spiffe.ErrUnauthorized, false},
		{"admin identity", hbone(src(e.ca, admin)), spiffe.ErrUnauthorized, false},
		{"TLS 1.2", tls12, nil, false},
		{"no h2 in ALPN", http11, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Dial("tcp", e.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c := tls.Client(raw, tc.cfg)
			defer c.Close()
			// Deadlines bound a broken build; the outcome is decided by the
			// server's handshake result and its alert.
			_ = c.SetDeadline(time.Now().Add(hbGuard))
			cerr := c.Handshake()
			serr := hbRecv(t, e.handshakes, "server handshake")
			if tc.ok {
				if cerr != nil || serr != nil {
					t.Fatalf("refused: client %v, server %v", cerr, serr)
				}
				return
			}
			if serr == nil {
				t.Fatal("the server's handshake accepted the client")
			}
			if tc.want != nil && !errors.Is(serr, tc.want) {
				t.Fatalf("server refused with %v, want %v", serr, tc.want)
			}
			if cerr == nil {
				// TLS 1.3: the client finishes first and learns the
				// verdict on its certificate from the server's alert.
				_, cerr = c.Read(make([]byte, 1))
				var ne net.Error
				if cerr == nil || errors.As(cerr, &ne) && ne.Timeout() {
					t.Fatalf("client connection usable after the server refused it: %v", cerr)
				}
			}
		})
	}

	t.Run("client pins another destination", func(t *testing.T) {
		d := e.dialer(t, hbWorkload(t, "ns-b", "someone-else"))
		p := e.pool(t, d)
		_, err := hbTryDial(p, e.key("pod-a"), hbTarget, Headers{})
		var se *StatusError
		if err == nil || errors.As(err, &se) || !errors.Is(err, spiffe.ErrUnauthorized) {
			t.Fatalf("Dial: %v, want the client's TLS refusal", err)
		}
		if serr := hbRecv(t, e.handshakes, "server handshake"); serr == nil {
			t.Fatal("server handshake succeeded though the client refused the server")
		}
		if p.Conns() != 0 {
			t.Fatalf("pool kept %d refused connections", p.Conns())
		}
	})
	if got := e.calls.Load(); got != 0 {
		t.Fatalf("%d tunnels reached the handler over refused connections", got)
	}
}

// TestHBONERedial: when the pooled connection died, the next Dial
// transparently opens a new one.
func TestHBONERedial(t *testing.T) {
	t.Run("server restarted", func(t *testing.T) {
		e := newHBEnv(t)
		d := e.dialer(t, e.dstID)
		p := e.pool(t, d)
		old := hbDial(t, p, e.key("pod-a"), hbTarget, Headers{})
		hbPing(t, old, "x")
		e.restart()
		// The tunnel on the dead connection ends, which also means the
		// client has noticed the connection is gone.
		hbWithin(t, "old tunnel ends", func() { _, _ = io.ReadAll(old) })
		if n := p.Conns(); n != 0 {
			t.Fatalf("pool reports %d connections after the only one died", n)
		}
		c := hbDial(t, p, e.key("pod-a"), hbTarget, Headers{})
		hbPing(t, c, "y")
		if d.total.Load() != 2 || e.accepts.Load() != 2 || p.Conns() != 1 {
			t.Fatalf("%d dials, %d accepted, %d pooled; want 2, 2, 1", d.total.Load(), e.accepts.Load(), p.Conns())
		}
	})
	t.Run("death not yet noticed", func(t *testing.T) {
		e := newHBEnv(t)
		d := e.dialer(t, e.dstID)
		p := e.pool(t, d)
		hbPing(t, hbDial(t, p, e.key("pod-a"), hbTarget, Headers{}), "x")
		// The pooled connection looks alive to the client but is dead:
		// the CONNECT on it fails, and Dial retries once on a new one.
		d.dieSilently()
		e.restart()
		c := hbDial(t, p, e.key("pod-a"), hbTarget, Headers{})
		hbPing(t, c, "y")
		if d.total.Load() != 2 || p.Conns() != 1 {
			t.Fatalf("%d dials, %d pooled; want 2, 1", d.total.Load(), p.Conns())
		}
	})
	t.Run("destination gone", func(t *testing.T) {
		e := newHBEnv(t)
		d := e.dialer(t, e.dstID)
		p := e.pool(t, d)
		hbPing(t, hbDial(t, p, e.key("pod-a"), hbTarget, Headers{}), "x")
		d.dieSilently()
		e.restart()
		e.ln.Close()
		_, err := hbTryDial(p, e.key("pod-a"), hbTarget, Headers{})
		if err == nil {
			t.Fatal("Dial succeeded with the destination gone")
		}
		if d.total.Load() != 2 {
			t.Fatalf("%d dials, want 2 (the first one, then one redial)", d.total.Load())
		}
	})
}

// TestHBONEHeaders: the source address travels as `forwarded: for=`,
// baggage and traceparent as they are, and the target as :authority, v4
// and v6.
func TestHBONEHeaders(t *testing.T) {
	e := newHBEnv(t)
	p := e.pool(t, e.dialer(t, e.dstID))
	got := make(chan Request, 1)
	e.setHandler(func(ctx context.Context, req Request) (net.Conn, int, error) {
		got <- req
		return e.dialApp(ctx)
	})
	for _, tc := range []struct {
		name   string
		target netip.AddrPort
		h      Headers
	}{
		{"v4 source", hbTarget, Headers{Source: netip.MustParseAddrPort("10.0.0.1:40000")}},
		{"v6 source", hbTarget, Headers{Source: netip.MustParseAddrPort("[fd00::1]:40000")}},
		{"v6 target", netip.MustParseAddrPort("[fd00::9]:8080"), Headers{Source: netip.MustParseAddrPort("[fd00::1]:1")}},
		{"no source", hbTarget, Headers{}},
		{"telemetry", hbTarget, Headers{Source: netip.MustParseAddrPort("10.0.0.1:1"), Baggage: "k8s.pod=a,k=v",
			Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := hbDial(t, p, e.key("pod-a"), tc.target, tc.h)
			r := hbRecv(t, got, "request at the handler")
			want := Request{Target: tc.target, Forwarded: tc.h.Source, Baggage: tc.h.Baggage, Traceparent: tc.h.Traceparent}
			if r != want {
				t.Fatalf("handler got %+v, want %+v", r, want)
			}
			if c.RemoteAddr().String() != tc.target.String() {
				t.Fatalf("RemoteAddr %v, want %v", c.RemoteAddr(), tc.target)
			}
		})
	}
}

// TestHBONEServeConnEndsWithContext: ServeConn serves until ctx is done
// (its contract), closing the connection.
func TestHBONEServeConnEndsWithContext(t *testing.T) {
	e := newHBEnv(t) // for the CA and identities
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := ServerTLS(e.ca.Source(t, e.dstID), hbTD)
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, cfg)
		if tc.HandshakeContext(ctx) != nil {
			return
		}
		e.srv.ServeConn(ctx, tc, e.handle, nil)
	}()
	src := e.ca.Source(t, e.srcID)
	raw, err := tls.Dial("tcp", ln.Addr().String(), ClientTLS(src, e.dstID))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := (&http2.Transport{}).NewClientConn(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	hbWithin(t, "ServeConn after its ctx is done", func() { <-served })
}

// TestHBONEPoolClose: Close closes every connection, including one whose
// dial was in flight, and the pool dials nothing afterwards.
func TestHBONEPoolClose(t *testing.T) {
	e := newHBEnv(t)
	d := e.dialer(t, e.dstID)
	d.gate = make(chan struct{})
	d.entered = make(chan struct{}, 1)
	p := NewPool(PoolOptions{Dialer: d})
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := hbTryDial(p, e.key("pod-a"), hbTarget, Headers{})
		res <- result{c, err}
	}()
	hbRecv(t, d.entered, "DialTCP")
	p.Close()
	close(d.gate)
	r := hbRecv(t, res, "Dial")
	if r.err == nil {
		r.c.Close()
		t.Fatal("Dial succeeded on a closed pool")
	}
	if p.Conns() != 0 {
		t.Fatalf("closed pool holds %d connections", p.Conns())
	}
	// The connection dialed for it was closed: the server sees it end.
	hbRecv(t, e.ended, "server connection ends")
	if _, err := hbTryDial(p, e.key("pod-a"), hbTarget, Headers{}); err == nil {
		t.Fatal("Dial after Close succeeded")
	}
	if d.total.Load() != 1 {
		t.Fatalf("%d dials, want only the one in flight at Close", d.total.Load())
	}
}

// TestHBONERefusedStreamRetried: a stream the destination refused
// (REFUSED_STREAM: never processed) is tried again on the same connection.
// The destination here is a bare HTTP/2 framer, since x/net's server only
// refuses streams in a race at connection start.
func TestHBONERefusedStreamRetried(t *testing.T) {
	e := newHBEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerTLS(e.ca.Source(t, e.dstID), hbTD)
	var heads atomic.Int32
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		if _, err := io.ReadFull(tc, make([]byte, len(http2.ClientPreface))); err != nil {
			return
		}
		fr := http2.NewFramer(tc, tc)
		_ = fr.WriteSettings()
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					_ = fr.WritePing(true, f.Data)
				}
			case *http2.HeadersFrame:
				if heads.Add(1) == 1 {
					_ = fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
					continue
				}
				block.Reset()
				_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: block.Bytes(), EndHeaders: true})
			case *http2.DataFrame:
				if len(f.Data()) > 0 {
					_ = fr.WriteData(f.StreamID, false, f.Data())
				}
				if f.StreamEnded() {
					_ = fr.WriteData(f.StreamID, true, nil)
				}
			}
		}
	})
	d := e.dialer(t, e.dstID)
	d.addr = ln.Addr().String()
	p := e.pool(t, d)
	c := hbDial(t, p, e.key("pod-a"), hbTarget, Headers{})
	hbPing(t, c, "x")
	if heads.Load() != 2 || d.total.Load() != 1 {
		t.Fatalf("%d CONNECTs over %d connections; want the refused one retried on the same connection", heads.Load(), d.total.Load())
	}
}
