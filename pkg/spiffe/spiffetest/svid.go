package spiffetest

import (
	"crypto/x509"
	"net/url"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultSVIDTTL is the lifetime of minted SVIDs unless an option says
// otherwise.
const DefaultSVIDTTL = time.Hour

// SVIDOption adjusts a minted SVID.
type SVIDOption func(*svidOptions)

type svidOptions struct {
	notBefore, notAfter time.Time
}

// WithValidity sets the SVID's validity window.
func WithValidity(notBefore, notAfter time.Time) SVIDOption {
	return func(o *svidOptions) {
		o.notBefore, o.notAfter = notBefore, notAfter
	}
}

// WithTTL makes the SVID valid from a minute ago (clock skew) until ttl from now.
func WithTTL(ttl time.Duration) SVIDOption {
	return func(o *svidOptions) {
		now := time.Now()
		o.notBefore, o.notAfter = now.Add(-time.Minute), now.Add(ttl)
	}
}

// Expired makes an SVID that expired an hour ago.
func Expired() SVIDOption {
	return func(o *svidOptions) {
		now := time.Now()
		o.notBefore, o.notAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
	}
}

// MintSVID issues an X.509-SVID for id, signed by ca, with a fresh P-256 key.
// The chain holds the leaf then ca's intermediates. id may belong to another
// trust domain than ca's, to test a CA that oversteps.
func (ca *CA) MintSVID(tb testing.TB, id spiffe.Identity, opts ...SVIDOption) *x509svid.SVID {
	tb.Helper()
	if id.IsZero() {
		tb.Fatalf("spiffetest: MintSVID with the zero Identity")
	}
	return ca.MintSVIDForID(tb, id.ID(), opts...)
}

// MintSVIDForID is MintSVID for any SPIFFE ID, including ones that are not
// Ambit identities, to test that such peers are refused.
func (ca *CA) MintSVIDForID(tb testing.TB, id spiffeid.ID, opts ...SVIDOption) *x509svid.SVID {
	tb.Helper()
	o := svidOptions{}
	WithTTL(DefaultSVIDTTL)(&o)
	for _, opt := range opts {
		opt(&o)
	}
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(tb),
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URL()},
	}
	leaf := createCertificate(tb, tmpl, ca.cert, key, ca.key)
	return &x509svid.SVID{
		ID:           id,
		Certificates: append([]*x509.Certificate{leaf}, ca.chain...),
		PrivateKey:   key,
	}
}

// Source returns a spiffe.Source holding an SVID for id minted by ca and
// ca's bundle.
func (ca *CA) Source(tb testing.TB, id spiffe.Identity, opts ...SVIDOption) *spiffe.Source {
	tb.Helper()
	src, err := spiffe.NewSource(ca.MintSVID(tb, id, opts...), ca.Bundle())
	if err != nil {
		tb.Fatalf("spiffetest: new source: %v", err)
	}
	return src
}
