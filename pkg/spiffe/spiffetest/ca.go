package spiffetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// caValidity is long enough for any test run and short enough that a leaked
// test root is worthless.
const caValidity = 24 * time.Hour

// CA is a test certificate authority: a self-signed root, or an
// intermediate under another CA.
type CA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// chain holds this CA's certificate and its parents up to, excluding,
	// the root; empty for a root. It follows every leaf this CA signs.
	chain []*x509.Certificate
	root  *x509.Certificate
}

// NewCA returns a new self-signed root CA for td. Two CAs for the same trust
// domain have unrelated keys, so a second one serves as a rogue CA.
func NewCA(tb testing.TB, td spiffeid.TrustDomain) *CA {
	tb.Helper()
	key := newKey(tb)
	now := time.Now()
	tmpl := caTemplate(tb, td, "root", now)
	cert := createCertificate(tb, tmpl, tmpl, key, key)
	return &CA{td: td, cert: cert, key: key, root: cert}
}

// NewIntermediate returns a CA whose certificate ca signs. SVIDs it mints
// carry the intermediates in their chain; ca.Bundle() verifies them.
func (ca *CA) NewIntermediate(tb testing.TB) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := caTemplate(tb, ca.td, "intermediate", time.Now())
	cert := createCertificate(tb, tmpl, ca.cert, key, ca.key)
	chain := append([]*x509.Certificate{cert}, ca.chain...)
	return &CA{td: ca.td, cert: cert, key: key, chain: chain, root: ca.root}
}

// TrustDomain returns the trust domain the CA was made for.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Certificate returns the CA's own certificate (the root for a root CA).
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Signer returns the CA's private key, for tests that sign by hand.
func (ca *CA) Signer() crypto.Signer { return ca.key }

// Root returns the self-signed root the CA chains to.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Intermediates returns the CA certificates between a leaf and the root,
// nearest first; empty for a root CA.
func (ca *CA) Intermediates() []*x509.Certificate {
	return append([]*x509.Certificate(nil), ca.chain...)
}

// Bundle returns a new trust bundle for the CA's trust domain holding its
// root. Combine roots of several CAs with x509bundle.Bundle.AddX509Authority
// to model a root rotation overlap.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.root})
}

// CertificatePEM returns the CA's certificate as PEM, as an operator would
// bring it to the CA service.
func (ca *CA) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// KeyPEM returns the CA's private key as PKCS#8 PEM.
func (ca *CA) KeyPEM(tb testing.TB) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		tb.Fatalf("spiffetest: marshal CA key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func caTemplate(tb testing.TB, td spiffeid.TrustDomain, role string, now time.Time) *x509.Certificate {
	tb.Helper()
	return &x509.Certificate{
		SerialNumber:          newSerial(tb),
		Subject:               pkix.Name{Organization: []string{"Ambit test"}, CommonName: "spiffetest " + role + " " + td.Name()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{td.ID().URL()},
	}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("spiffetest: generate key: %v", err)
	}
	return key
}

func newSerial(tb testing.TB) *big.Int {
	tb.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatalf("spiffetest: generate serial: %v", err)
	}
	return serial
}

func createCertificate(tb testing.TB, tmpl, parent *x509.Certificate, pub *ecdsa.PrivateKey, signer crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub.Public(), signer)
	if err != nil {
		tb.Fatalf("spiffetest: create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("spiffetest: parse certificate: %v", err)
	}
	return cert
}
