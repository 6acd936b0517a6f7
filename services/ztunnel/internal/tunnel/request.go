// Package tunnel is HBONE (DESIGN §2): TCP streams carried as HTTP/2
// CONNECT requests over mutual TLS 1.3 on port 15008. The server side
// terminates tunnels for the pods of this node; the client side pools
// multiplexed connections to other pods' ztunnels.
//
// TLS is the caller's: it picks the certificate per pod and verifies the
// peer's SPIFFE identity (pkg/spiffe with WithHBONE), because only it knows
// which pod a connection belongs to. This package speaks HTTP/2 on top,
// with golang.org/x/net/http2 used directly and flow-control windows set
// large enough that throughput does not collapse on any latency.
package tunnel

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Request is one HBONE CONNECT as the destination sees it.
type Request struct {
	// Target is the destination pod's ip:port (:authority).
	Target netip.AddrPort
	// Forwarded is the original client address from `forwarded: for=`,
	// when the source sent one.
	Forwarded netip.AddrPort
	// Baggage and Traceparent are passed on to telemetry.
	Baggage     string
	Traceparent string
}

// Bounds on what a request may carry; anything larger is malformed.
const (
	maxAuthority  = 64
	maxHeaderLen  = 4096
	maxForwarded  = 256
	statusDenied  = http.StatusUnauthorized
	statusBadDest = http.StatusBadRequest
)

// ErrBadRequest wraps every reason a request is refused with 400.
var ErrBadRequest = errors.New("bad HBONE request")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// ParseRequest checks an incoming request strictly: a plain CONNECT
// (no :path, no :scheme, no protocol pseudo-header) whose :authority is a
// literal IP and port. Host names are refused: the source ztunnel already
// resolved the destination, and the destination must not resolve names on
// a peer's behalf.
func ParseRequest(r *http.Request) (Request, error) {
	if r.Method != http.MethodConnect {
		return Request{}, bad("method %q, want CONNECT", r.Method)
	}
	if r.URL == nil || r.URL.Path != "" || r.URL.Scheme != "" || r.URL.RawQuery != "" {
		return Request{}, bad("CONNECT with a path or scheme (extended CONNECT is not HBONE)")
	}
	if p := r.Header.Get(":protocol"); p != "" {
		return Request{}, bad("extended CONNECT protocol %q", p)
	}
	auth := r.Host
	if auth == "" && r.URL != nil {
		auth = r.URL.Host
	}
	if auth == "" || len(auth) > maxAuthority {
		return Request{}, bad("authority %q is not ip:port", truncate(auth))
	}
	target, err := netip.ParseAddrPort(auth)
	if err != nil || target.Port() == 0 || target.Addr().Zone() != "" {
		return Request{}, bad("authority %q is not a literal ip:port", truncate(auth))
	}
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	if !target.Addr().IsGlobalUnicast() {
		return Request{}, bad("destination %s is not a unicast address", target)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			if len(k)+len(v) > maxHeaderLen {
				return Request{}, bad("header %q longer than %d bytes", truncate(k), maxHeaderLen)
			}
		}
	}
	req := Request{Target: target, Baggage: r.Header.Get("Baggage"), Traceparent: r.Header.Get("Traceparent")}
	if fwd := r.Header.Get("Forwarded"); fwd != "" {
		ap, err := parseForwardedFor(fwd)
		if err != nil {
			return Request{}, err
		}
		req.Forwarded = ap
	}
	return req, nil
}

// parseForwardedFor reads the for= of the first element of an RFC 7239
// Forwarded header: for="ip:port" or for="[v6]:port" or a bare ip.
func parseForwardedFor(v string) (netip.AddrPort, error) {
	if len(v) > maxForwarded {
		return netip.AddrPort{}, bad("forwarded header longer than %d bytes", maxForwarded)
	}
	first, _, _ := strings.Cut(v, ",")
	for _, pair := range strings.Split(first, ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(k, "for") {
			continue
		}
		val = strings.Trim(val, `"`)
		if ap, err := netip.ParseAddrPort(val); err == nil {
			return ap, nil
		}
		if a, err := netip.ParseAddr(strings.Trim(val, "[]")); err == nil {
			return netip.AddrPortFrom(a, 0), nil
		}
		return netip.AddrPort{}, bad("forwarded for=%q is not an address", truncate(val))
	}
	return netip.AddrPort{}, nil
}

// ForwardedFor renders the header value for a source address.
func ForwardedFor(src netip.AddrPort) string {
	if src.Addr().Is6() {
		return fmt.Sprintf(`for="[%s]:%d"`, src.Addr(), src.Port())
	}
	return fmt.Sprintf(`for="%s"`, src)
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// hostPort formats a target for :authority.
func hostPort(ap netip.AddrPort) string {
	return net.JoinHostPort(ap.Addr().String(), fmt.Sprint(ap.Port()))
}
