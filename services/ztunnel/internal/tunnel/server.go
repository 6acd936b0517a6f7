//lint:file-ignore SA1019 HBONE drives golang.org/x/net/http2 directly (DESIGN §11) for per-connection ServeConn/NewClientConn on our own TLS conns; moving to net/http's HTTP/2 API of Go 1.26 is a follow-up.

package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"

	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Window sizes: HTTP/2's 64 KiB default caps a stream at 64 KiB per round
// trip, which is nothing for a tunnel (DESIGN §11).
const (
	DefaultStreamWindow = 4 << 20
	DefaultConnWindow   = 16 << 20
)

// Handler decides about one tunnel and opens its upstream: it returns the
// upstream connection, or the status to refuse with (401 denied by
// policy, 503 upstream connect failure, 400 bad destination) and why.
type Handler func(ctx context.Context, req Request) (upstream net.Conn, status int, err error)

// Done reports a finished tunnel: bytes towards the destination app
// (received from the peer) and back, and how it ended.
type Done func(req Request, toApp, fromApp int64, status int, err error)

// ServerOptions configures a Server.
type ServerOptions struct {
	StreamWindow, ConnWindow int32
	// MaxStreams bounds concurrent tunnels per connection (default 1000).
	MaxStreams uint32
	Logger     *slog.Logger
}

// Server terminates HBONE connections.
type Server struct {
	h2  *http2.Server
	log *slog.Logger
}

// NewServer makes a server.
func NewServer(o ServerOptions) *Server {
	if o.StreamWindow <= 0 {
		o.StreamWindow = DefaultStreamWindow
	}
	if o.ConnWindow <= 0 {
		o.ConnWindow = DefaultConnWindow
	}
	if o.MaxStreams == 0 {
		o.MaxStreams = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		h2: &http2.Server{
			MaxUploadBufferPerStream:     o.StreamWindow,
			MaxUploadBufferPerConnection: o.ConnWindow,
			MaxConcurrentStreams:         o.MaxStreams,
			IdleTimeout:                  10 * time.Minute,
		},
		log: o.Logger,
	}
}

// ServeConn serves one handshaken mTLS connection (the caller verified the
// peer) until it ends or ctx is done.
func (s *Server) ServeConn(ctx context.Context, c *tls.Conn, h Handler, done Done) {
	// x/net/http2 only passes ctx on to the handlers; it does not end the
	// connection when ctx is done, so do that here.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	s.h2.ServeConn(c, &http2.ServeConnOpts{
		Context: ctx,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveStream(w, r, h, done) }),
	})
}

func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, h Handler, done Done) {
	req, err := ParseRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		if done != nil {
			done(req, 0, 0, http.StatusBadRequest, err)
		}
		return
	}
	up, status, err := h(r.Context(), req)
	if err != nil || up == nil {
		if up != nil {
			_ = up.Close()
		}
		if err == nil {
			err = errors.New("handler returned no upstream connection")
		}
		// A refusal is an error status: one the handler left out or got
		// wrong must not read as an open tunnel (200) at the source.
		if status < 400 || status > 599 {
			status = http.StatusServiceUnavailable
		}
		http.Error(w, http.StatusText(status), status)
		if done != nil {
			done(req, 0, 0, status, err)
		}
		return
	}
	defer up.Close()
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	// Peer → app in the background; app → peer here. When the app side
	// ends, returning ends the response stream (the peer sees EOF).
	var wg sync.WaitGroup
	var toApp int64
	var toErr error
	wg.Go(func() {
		toApp, toErr = copyHalf(up, r.Body)
	})
	fromApp, fromErr := copyHalf(&flushWriter{w: w, f: flusher}, up)
	// The app finished sending (or the connection was cut, e.g. by a
	// policy change): close the upstream and stop reading the peer, so
	// the handler returns and the peer sees the stream end.
	_ = up.Close()
	_ = r.Body.Close()
	wg.Wait()
	if done != nil {
		done(req, toApp, fromApp, http.StatusOK, errors.Join(ignoreClosed(toErr), ignoreClosed(fromErr)))
	}
}

// flushWriter pushes every write to the peer at once: a tunnel carries
// interactive protocols, not bulk responses.
type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (fw *flushWriter) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	if fw.f != nil {
		fw.f.Flush()
	}
	return n, err
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, context.Canceled) {
		return nil
	}
	var se http2.StreamError
	if errors.As(err, &se) && se.Code == http2.ErrCodeCancel {
		return nil
	}
	return err
}

// ServerTLS is the TLS configuration of a destination pod's 15008: TLS 1.3,
// ALPN h2, the pod's certificate from src, and a client certificate that
// must be a workload identity of td — node, control-plane and admin
// identities, foreign trust domains and clients without a certificate are
// refused in the handshake (DESIGN §4: data-plane peers accept only
// workload identities).
func ServerTLS(src spiffe.X509Source, td spiffeid.TrustDomain) *tls.Config {
	return spiffe.ServerConfig(src, spiffe.AuthorizeWorkloads(td), spiffe.WithHBONE())
}

// ClientTLS is the source side: the source workload's certificate from
// src, and the destination's identity pinned.
func ClientTLS(src spiffe.X509Source, dst spiffe.Identity) *tls.Config {
	return spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(dst), spiffe.WithHBONE())
}
