//lint:file-ignore SA1019 HBONE drives golang.org/x/net/http2 directly (DESIGN §11) for per-connection ServeConn/NewClientConn on our own TLS conns; moving to net/http's HTTP/2 API of Go 1.26 is a follow-up.

package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Key says which pooled connection a tunnel may ride (DESIGN §5): the
// source pod (its netns and IP), the source identity, the destination
// identity and the destination's HBONE address. Two pods with the same
// identity never share a connection, or one pod's traffic would leave
// with the other's address.
type Key struct {
	SrcPod  string // the source pod's uid
	SrcIP   netip.Addr
	SrcID   string
	DstID   string
	DstAddr netip.AddrPort
}

// Dialer opens the TCP connection and the TLS session for a key: the
// caller dials from inside the source pod's netns, marked so redirection
// skips it, and presents the source workload's certificate while pinning
// the destination's identity.
type Dialer interface {
	DialTCP(ctx context.Context, k Key) (net.Conn, error)
	TLSConfig(ctx context.Context, k Key) (*tls.Config, error)
}

// StatusError is a non-200 answer of the destination.
type StatusError struct{ Status int }

func (e *StatusError) Error() string {
	return fmt.Sprintf("HBONE CONNECT refused: %d %s", e.Status, http.StatusText(e.Status))
}

// PoolOptions configures a Pool.
type PoolOptions struct {
	Dialer Dialer
	// IdleTimeout closes a connection without tunnels (default 5m).
	IdleTimeout time.Duration
	// HandshakeTimeout bounds TCP + TLS (default 10s).
	HandshakeTimeout time.Duration
}

// Pool multiplexes tunnels over few HTTP/2 connections per key.
type Pool struct {
	opts PoolOptions
	t    *http2.Transport

	mu     sync.Mutex
	conns  map[Key][]*http2.ClientConn
	dials  map[Key]*dialing
	closed bool
}

type dialing struct {
	done chan struct{}
	cc   *http2.ClientConn
	err  error
}

// NewPool makes a pool.
func NewPool(o PoolOptions) *Pool {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	return &Pool{
		opts: o,
		t: &http2.Transport{
			IdleConnTimeout: o.IdleTimeout,
			ReadIdleTimeout: 30 * time.Second,
			PingTimeout:     10 * time.Second,
		},
		conns: map[Key][]*http2.ClientConn{},
		dials: map[Key]*dialing{},
	}
}

// Headers are the request headers of a tunnel.
type Headers struct {
	// Source is the original client, sent as `forwarded: for=`.
	Source      netip.AddrPort
	Baggage     string
	Traceparent string
}

// Dial opens a tunnel to target through the connection of k.
func (p *Pool) Dial(ctx context.Context, k Key, target netip.AddrPort, h Headers) (net.Conn, error) {
	for attempt := 0; ; attempt++ {
		cc, err := p.get(ctx, k)
		if err != nil {
			return nil, err
		}
		c, err := roundTrip(ctx, cc, target, h)
		if err == nil {
			return c, nil
		}
		var se *StatusError
		if errors.As(err, &se) || attempt > 0 || ctx.Err() != nil {
			return nil, err
		}
		var serr http2.StreamError
		if errors.As(err, &serr) {
			// The destination reset this stream only: the connection and
			// the other tunnels on it are fine. A refused stream was never
			// processed and may be tried again; any other reset is final.
			if serr.Code != http2.ErrCodeRefusedStream {
				return nil, err
			}
			continue
		}
		// The connection died under us (peer restarted, GOAWAY): forget it
		// and try once on a fresh one.
		p.drop(k, cc)
	}
}

// errPoolClosed is what Dial returns once Close was called.
var errPoolClosed = errors.New("HBONE pool closed")

// get returns a live connection of k with room for a stream, dialing one
// when needed; concurrent callers of one key share one dial.
func (p *Pool) get(ctx context.Context, k Key) (*http2.ClientConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errPoolClosed
	}
	live := p.conns[k][:0]
	for _, cc := range p.conns[k] {
		if !cc.State().Closed {
			live = append(live, cc)
		}
	}
	p.conns[k] = live
	for _, cc := range live {
		if cc.CanTakeNewRequest() {
			p.mu.Unlock()
			return cc, nil
		}
	}
	d := p.dials[k]
	if d == nil {
		d = &dialing{done: make(chan struct{})}
		p.dials[k] = d
		go p.dial(k, d)
	}
	p.mu.Unlock()
	select {
	case <-d.done:
		return d.cc, d.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *Pool) dial(k Key, d *dialing) {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.HandshakeTimeout)
	defer cancel()
	d.cc, d.err = p.connect(ctx, k)
	p.mu.Lock()
	delete(p.dials, k)
	if d.err == nil && p.closed {
		// Close ran while we dialed: nobody would ever close this one.
		_ = d.cc.Close()
		d.cc, d.err = nil, errPoolClosed
	}
	if d.err == nil {
		p.conns[k] = append(p.conns[k], d.cc)
	}
	p.mu.Unlock()
	close(d.done)
}

func (p *Pool) connect(ctx context.Context, k Key) (*http2.ClientConn, error) {
	cfg, err := p.opts.Dialer.TLSConfig(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("HBONE to %s: %w", k.DstAddr, err)
	}
	raw, err := p.opts.Dialer.DialTCP(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("HBONE to %s: %w", k.DstAddr, err)
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("HBONE to %s (%s): TLS: %w", k.DstAddr, k.DstID, err)
	}
	if tc.ConnectionState().NegotiatedProtocol != http2.NextProtoTLS {
		tc.Close()
		return nil, fmt.Errorf("HBONE to %s: peer did not negotiate h2", k.DstAddr)
	}
	cc, err := p.t.NewClientConn(tc)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("HBONE to %s: %w", k.DstAddr, err)
	}
	return cc, nil
}

func (p *Pool) drop(k Key, bad *http2.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.conns[k]
	for i, cc := range cs {
		if cc == bad {
			p.conns[k] = append(cs[:i:i], cs[i+1:]...)
			break
		}
	}
	_ = bad.Close()
}

// Close closes every pooled connection, and those being dialed as they
// complete; Dial fails from then on.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, cs := range p.conns {
		for _, cc := range cs {
			_ = cc.Close()
		}
		delete(p.conns, k)
	}
}

// Conns is how many live connections the pool holds (for the admin
// endpoint and tests); connections that died are not counted, even before
// the next Dial of their key forgets them.
func (p *Pool) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, cs := range p.conns {
		for _, cc := range cs {
			if !cc.State().Closed {
				n++
			}
		}
	}
	return n
}

// roundTrip sends the CONNECT and returns the tunnel once the destination
// answered 200.
func roundTrip(ctx context.Context, cc *http2.ClientConn, target netip.AddrPort, h Headers) (net.Conn, error) {
	pr, pw := io.Pipe()
	// The stream outlives the dial's ctx: only its setup is bounded by it.
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodConnect, "", pr)
	if err != nil {
		return nil, err
	}
	req.URL = &url.URL{Host: hostPort(target)}
	req.Host = hostPort(target)
	if h.Source.IsValid() {
		req.Header.Set("Forwarded", ForwardedFor(h.Source))
	}
	if h.Baggage != "" {
		req.Header.Set("Baggage", h.Baggage)
	}
	if h.Traceparent != "" {
		req.Header.Set("Traceparent", h.Traceparent)
	}
	type result struct {
		resp *http.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := cc.RoundTrip(req)
		ch <- result{resp, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		pw.CloseWithError(ctx.Err())
		go func() {
			if r := <-ch; r.resp != nil {
				r.resp.Body.Close()
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		pw.Close()
		return nil, r.err
	}
	if r.resp.StatusCode != http.StatusOK {
		r.resp.Body.Close()
		pw.Close()
		return nil, &StatusError{Status: r.resp.StatusCode}
	}
	return &streamConn{body: r.resp.Body, pw: pw, local: cc, target: target}, nil
}

// streamConn is a tunnel as a net.Conn: writes go into the request body,
// reads come from the response body.
type streamConn struct {
	body   io.ReadCloser
	pw     *io.PipeWriter
	local  *http2.ClientConn
	target netip.AddrPort
	once   sync.Once
}

func (c *streamConn) Read(b []byte) (int, error)  { return c.body.Read(b) }
func (c *streamConn) Write(b []byte) (int, error) { return c.pw.Write(b) }

// CloseWrite ends the request body: the destination's app sees EOF.
func (c *streamConn) CloseWrite() error { return c.pw.Close() }

func (c *streamConn) Close() error {
	c.once.Do(func() {
		_ = c.pw.Close()
		_ = c.body.Close()
	})
	return nil
}

func (c *streamConn) LocalAddr() net.Addr  { return tunnelAddr("hbone") }
func (c *streamConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.target) }

// Deadlines are not supported on tunnels; the proxy bounds setup with ctx
// and lets data flow as long as both ends keep it open.
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

type tunnelAddr string

func (a tunnelAddr) Network() string { return string(a) }
func (a tunnelAddr) String() string  { return string(a) }
