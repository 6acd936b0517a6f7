package tunnel

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// connectReq builds a request the way golang.org/x/net/http2's server does
// for a plain CONNECT: Host and URL.Host carry :authority, nothing else is
// set. Callers add what a case needs.
func connectReq(method, authority string) *http.Request {
	return &http.Request{
		Method: method,
		Host:   authority,
		URL:    &url.URL{Host: authority},
		Header: http.Header{},
	}
}

// TestParseRequestCases is the table of what a destination accepts as an
// HBONE request (DESIGN §2): a plain CONNECT to a literal unicast ip:port,
// with an optional `forwarded: for=` naming the original client.
func TestParseRequestCases(t *testing.T) {
	ap := netip.MustParseAddrPort
	with := func(r *http.Request, f func(*http.Request)) *http.Request { f(r); return r }
	hdr := func(r *http.Request, kv ...string) *http.Request {
		for i := 0; i+1 < len(kv); i += 2 {
			r.Header.Set(kv[i], kv[i+1])
		}
		return r
	}
	cases := []struct {
		name string
		r    *http.Request
		want Request // compared when ok
		ok   bool
	}{
		// Accepted.
		{"v4", connectReq("CONNECT", "10.1.2.3:80"), Request{Target: ap("10.1.2.3:80")}, true},
		{"v4 highest port", connectReq("CONNECT", "10.1.2.3:65535"), Request{Target: ap("10.1.2.3:65535")}, true},
		{"v6 in brackets", connectReq("CONNECT", "[fd00::1]:443"), Request{Target: ap("[fd00::1]:443")}, true},
		{"v6 global", connectReq("CONNECT", "[2001:db8::7]:8080"), Request{Target: ap("[2001:db8::7]:8080")}, true},
		{"v4-mapped v6 is unmapped", connectReq("CONNECT", "[::ffff:10.0.0.1]:80"), Request{Target: ap("10.0.0.1:80")}, true},
		{"authority only in URL", with(connectReq("CONNECT", "10.1.2.3:80"), func(r *http.Request) { r.Host = "" }),
			Request{Target: ap("10.1.2.3:80")}, true},
		{"header at the size limit", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Baggage", strings.Repeat("b", maxHeaderLen-len("Baggage"))),
			Request{Target: ap("10.1.2.3:80"), Baggage: strings.Repeat("b", maxHeaderLen-len("Baggage"))}, true},
		{"baggage and traceparent", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Baggage", "k=v", "Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
			Request{Target: ap("10.1.2.3:80"), Baggage: "k=v", Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, true},

		// forwarded: for=
		{"forwarded v4 ip:port quoted", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", `for="10.0.0.7:41000"`),
			Request{Target: ap("10.1.2.3:80"), Forwarded: ap("10.0.0.7:41000")}, true},
		{"forwarded v4 ip:port bare", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", `for=10.0.0.7:41000`),
			Request{Target: ap("10.1.2.3:80"), Forwarded: ap("10.0.0.7:41000")}, true},
		{"forwarded [v6]:port", hdr(connectReq("CONNECT", "[fd00::1]:443"), "Forwarded", `for="[fd00::2]:5000"`),
			Request{Target: ap("[fd00::1]:443"), Forwarded: ap("[fd00::2]:5000")}, true},
		{"forwarded bare v4", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", "for=10.0.0.7"),
			Request{Target: ap("10.1.2.3:80"), Forwarded: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.7"), 0)}, true},
		{"forwarded bare [v6]", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", `for="[fd00::2]"`),
			Request{Target: ap("10.1.2.3:80"), Forwarded: netip.AddrPortFrom(netip.MustParseAddr("fd00::2"), 0)}, true},
		{"forwarded FOR= with other params", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", `proto=https; FOR="10.0.0.7:1" ;by=10.0.0.1`),
			Request{Target: ap("10.1.2.3:80"), Forwarded: ap("10.0.0.7:1")}, true},
		{"forwarded first element wins", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", `for=10.0.0.7:1, for=garbage`),
			Request{Target: ap("10.1.2.3:80"), Forwarded: ap("10.0.0.7:1")}, true},
		{"forwarded without for", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", `proto=https`),
			Request{Target: ap("10.1.2.3:80")}, true},
		{"forwarded as written by ForwardedFor v4", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", ForwardedFor(ap("10.9.8.7:65535"))),
			Request{Target: ap("10.1.2.3:80"), Forwarded: ap("10.9.8.7:65535")}, true},
		{"forwarded as written by ForwardedFor v6", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", ForwardedFor(ap("[2001:db8::1]:9"))),
			Request{Target: ap("10.1.2.3:80"), Forwarded: ap("[2001:db8::1]:9")}, true},

		// Refused: not a plain CONNECT.
		{"GET", connectReq("GET", "10.1.2.3:80"), Request{}, false},
		{"lower-case connect", connectReq("connect", "10.1.2.3:80"), Request{}, false},
		{"empty method", connectReq("", "10.1.2.3:80"), Request{}, false},
		{"path", with(connectReq("CONNECT", "10.1.2.3:80"), func(r *http.Request) { r.URL.Path = "/" }), Request{}, false},
		{"scheme", with(connectReq("CONNECT", "10.1.2.3:80"), func(r *http.Request) { r.URL.Scheme = "https" }), Request{}, false},
		{"query", with(connectReq("CONNECT", "10.1.2.3:80"), func(r *http.Request) { r.URL.RawQuery = "a=b" }), Request{}, false},
		{"nil URL", with(connectReq("CONNECT", "10.1.2.3:80"), func(r *http.Request) { r.URL = nil }), Request{}, false},
		{"extended CONNECT", hdr(connectReq("CONNECT", "10.1.2.3:80"), ":protocol", "websocket"), Request{}, false},

		// Refused: the authority is not a literal ip:port.
		{"hostname", connectReq("CONNECT", "svc.ns.svc.cluster.local:80"), Request{}, false},
		{"localhost", connectReq("CONNECT", "localhost:80"), Request{}, false},
		{"no authority", connectReq("CONNECT", ""), Request{}, false},
		{"no port", connectReq("CONNECT", "10.1.2.3"), Request{}, false},
		{"empty port", connectReq("CONNECT", "10.1.2.3:"), Request{}, false},
		{"port 0", connectReq("CONNECT", "10.1.2.3:0"), Request{}, false},
		{"port too large", connectReq("CONNECT", "10.1.2.3:65536"), Request{}, false},
		{"v6 without brackets", connectReq("CONNECT", "fd00::1:443"), Request{}, false},
		{"v6 without port", connectReq("CONNECT", "[fd00::1]"), Request{}, false},
		{"v6 zone", connectReq("CONNECT", "[fe80::1%eth0]:80"), Request{}, false},
		{"userinfo", connectReq("CONNECT", "u@10.1.2.3:80"), Request{}, false},
		{"too long", connectReq("CONNECT", strings.Repeat("1", maxAuthority+1)), Request{}, false},

		// Refused: not a unicast destination a peer may ask for.
		{"loopback v4", connectReq("CONNECT", "127.0.0.1:22"), Request{}, false},
		{"loopback v4 other", connectReq("CONNECT", "127.8.9.10:22"), Request{}, false},
		{"loopback v6", connectReq("CONNECT", "[::1]:22"), Request{}, false},
		{"loopback v4-mapped", connectReq("CONNECT", "[::ffff:127.0.0.1]:22"), Request{}, false},
		{"unspecified v4", connectReq("CONNECT", "0.0.0.0:80"), Request{}, false},
		{"unspecified v6", connectReq("CONNECT", "[::]:80"), Request{}, false},
		{"multicast", connectReq("CONNECT", "224.0.0.1:80"), Request{}, false},
		{"broadcast", connectReq("CONNECT", "255.255.255.255:80"), Request{}, false},
		{"link-local v4", connectReq("CONNECT", "169.254.169.254:80"), Request{}, false},
		{"link-local v6", connectReq("CONNECT", "[fe80::1]:80"), Request{}, false},

		// Refused: forwarded is not an address.
		{"forwarded garbage", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", "for=notanip"), Request{}, false},
		{"forwarded hostname:port", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", `for="client.example:80"`), Request{}, false},
		{"forwarded empty for", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", "for="), Request{}, false},
		{"forwarded too long", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Forwarded", strings.Repeat("for=1.2.3.4,", 40)), Request{}, false},

		// Refused: oversized headers.
		{"header one byte over", hdr(connectReq("CONNECT", "10.1.2.3:80"), "Baggage", strings.Repeat("b", maxHeaderLen-len("Baggage")+1)), Request{}, false},
		{"oversized unknown header", hdr(connectReq("CONNECT", "10.1.2.3:80"), "X-Junk", strings.Repeat("j", 64<<10)), Request{}, false},
		{"oversized second value", with(connectReq("CONNECT", "10.1.2.3:80"), func(r *http.Request) {
			r.Header.Add("X-Multi", "short")
			r.Header.Add("X-Multi", strings.Repeat("m", maxHeaderLen))
		}), Request{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest(tc.r)
			if !tc.ok {
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				if !errors.Is(err, ErrBadRequest) {
					t.Fatalf("error %v does not wrap ErrBadRequest", err)
				}
				if len(err.Error()) > 512 {
					t.Fatalf("error message of %d bytes echoes peer input unbounded", len(err.Error()))
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestForwardedForRoundTrip: what the source writes, the destination reads
// back (DESIGN §2: `forwarded: for="ip:port"`, v6 in brackets).
func TestForwardedForRoundTrip(t *testing.T) {
	for _, s := range []string{"10.0.0.1:1", "10.0.0.1:0", "192.168.255.254:65535", "[fd00::1]:5000", "[2001:db8::1]:1", "[::ffff:10.0.0.1]:7"} {
		src := netip.MustParseAddrPort(s)
		v := ForwardedFor(src)
		if src.Addr().Is6() && !strings.HasPrefix(v, `for="[`) {
			t.Errorf("%s rendered as %s, want brackets", s, v)
		}
		got, err := parseForwardedFor(v)
		if err != nil || got != src {
			t.Errorf("%s → %s → %v, %v", s, v, got, err)
		}
	}
}

// FuzzParseRequestFields drives ParseRequest with every field a peer
// controls in a CONNECT: method, :authority, :path, :scheme, a query,
// :protocol, `forwarded` and an arbitrary header of arbitrary size. It
// never panics, every refusal wraps ErrBadRequest, and whatever it accepts
// is a plain CONNECT to a literal unicast ip:port (port > 0, no zone, never
// loopback, unspecified, multicast or link-local) that is exactly the
// :authority sent.
func FuzzParseRequestFields(f *testing.F) {
	// method, authority, path, scheme, query, protocol, forwarded, header name, header size
	f.Add("CONNECT", "10.1.2.3:80", "", "", "", "", `for="10.0.0.1:1234"`, "Baggage", uint16(16))
	f.Add("CONNECT", "[fd00::1]:443", "", "", "", "", `for="[fd00::2]:1"`, "Traceparent", uint16(55))
	f.Add("CONNECT", "[::ffff:10.0.0.1]:80", "", "", "", "", "for=10.0.0.7", "", uint16(0))
	f.Add("CONNECT", "10.1.2.3:80", "", "", "", "", "", "X-Big", uint16(maxHeaderLen))
	f.Add("GET", "10.1.2.3:80", "/", "https", "", "", "", "", uint16(0))
	f.Add("CONNECT", "10.1.2.3:80", "/chat", "https", "", "websocket", "", "", uint16(0))
	f.Add("CONNECT", "svc.cluster.local:80", "", "", "", "", "", "", uint16(0))
	f.Add("CONNECT", "127.0.0.1:22", "", "", "", "", "for=[::1]", "", uint16(0))
	f.Add("CONNECT", "[fe80::1%eth0]:80", "", "", "", "", "", "", uint16(0))
	f.Add("CONNECT", "10.1.2.3:0", "", "", "q=1", "", "for=garbage", "", uint16(0))
	f.Fuzz(func(t *testing.T, method, authority, path, scheme, query, protocol, forwarded, name string, size uint16) {
		r := &http.Request{
			Method: method,
			Host:   authority,
			URL:    &url.URL{Scheme: scheme, Host: authority, Path: path, RawQuery: query},
			Header: http.Header{},
		}
		if protocol != "" {
			r.Header.Set(":protocol", protocol)
		}
		if forwarded != "" {
			r.Header.Set("Forwarded", forwarded)
		}
		if name != "" {
			r.Header.Add(name, strings.Repeat("v", int(size)))
		}
		req, err := ParseRequest(r)
		again, err2 := ParseRequest(r)
		if req != again || (err == nil) != (err2 == nil) {
			t.Fatalf("not deterministic: %+v, %v then %+v, %v", req, err, again, err2)
		}
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error not wrapping ErrBadRequest: %v", err)
			}
			return
		}
		if method != http.MethodConnect || path != "" || scheme != "" || query != "" || protocol != "" {
			t.Fatalf("accepted %q path=%q scheme=%q query=%q protocol=%q", method, path, scheme, query, protocol)
		}
		a := req.Target.Addr()
		if !req.Target.IsValid() || req.Target.Port() == 0 || a.Zone() != "" || a.Is4In6() ||
			!a.IsGlobalUnicast() || a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() {
			t.Fatalf("accepted target %v from %q", req.Target, authority)
		}
		sent, perr := netip.ParseAddrPort(authority)
		if perr != nil || netip.AddrPortFrom(sent.Addr().Unmap(), sent.Port()) != req.Target {
			t.Fatalf("target %v is not the authority %q", req.Target, authority)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if len(k)+len(v) > maxHeaderLen {
					t.Fatalf("accepted header %q of %d bytes", k, len(v))
				}
			}
		}
		if forwarded == "" && req.Forwarded.IsValid() {
			t.Fatalf("forwarded %v without a header", req.Forwarded)
		}
		if req.Baggage != r.Header.Get("Baggage") || req.Traceparent != r.Header.Get("Traceparent") {
			t.Fatalf("telemetry headers lost: %+v", req)
		}
	})
}

// FuzzForwardedFor: every source address survives ForwardedFor then the
// destination's parser.
func FuzzForwardedFor(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1}, uint16(40000))
	f.Add([]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(443))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1}, uint16(0))
	f.Fuzz(func(t *testing.T, ip []byte, port uint16) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		src := netip.AddrPortFrom(a, port)
		got, err := parseForwardedFor(ForwardedFor(src))
		if err != nil || got != src {
			t.Fatalf("%v → %s → %v, %v", src, ForwardedFor(src), got, err)
		}
	})
}
