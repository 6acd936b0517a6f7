package spiffe

import (
	"crypto/tls"
	"slices"
)

// ProtocolH2 is the ALPN name of HTTP/2, which HBONE requires.
const ProtocolH2 = "h2"

// Option adjusts a TLS configuration built by this package.
type Option func(*options)

type options struct {
	minVersion uint16
	nextProtos []string
}

func newOptions(opts []Option) options {
	o := options{minVersion: tls.VersionTLS12}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithMinVersion sets the lowest TLS version accepted (default TLS 1.2, so
// stock Envoy clients, which stop at 1.2 unless configured, can connect).
// Versions below TLS 1.2 are raised to 1.2.
func WithMinVersion(version uint16) Option {
	return func(o *options) {
		o.minVersion = max(version, tls.VersionTLS12)
	}
}

// WithNextProtos sets the ALPN protocols offered (client) or accepted
// (server), most preferred first, and makes one of them mandatory: a
// handshake that negotiates none of them, including with a peer that sends
// no ALPN at all, fails with ErrApplicationProtocol. Go's TLS stack alone
// lets such a handshake through.
func WithNextProtos(protocols ...string) Option {
	return func(o *options) {
		o.nextProtos = slices.Clone(protocols)
	}
}

// WithHBONE applies HBONE's transport requirements (DESIGN §2): TLS 1.3 and
// ALPN h2. Pair it with AuthorizeWorkloads on the server and
// AuthorizeIdentity(destination) on the client.
func WithHBONE() Option {
	return func(o *options) {
		WithMinVersion(tls.VersionTLS13)(o)
		WithNextProtos(ProtocolH2)(o)
	}
}
