package signer_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/fault"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
	"github.com/ambitmesh/ambit/services/ca/internal/signer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var web = spiffe.MustParse("spiffe://cluster.local/ns/shop/sa/web")

func csr(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest, uris ...string) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func basicConstraints(t testing.TB, isCA bool) *x509.CertificateRequest {
	v, err := asn1.Marshal(struct{ IsCA bool }{isCA})
	if err != nil {
		t.Fatal(err)
	}
	return &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: v}}}
}

func TestCheckCSR(t *testing.T) {
	p256, p384, p224 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P384()), ecKey(t, elliptic.P224())
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	good := csr(t, p256, nil, web.String())
	tampered := []byte(strings.Replace(string(good), string(good[100:104]), "AAAA", 1))

	tests := []struct {
		name   string
		csr    []byte
		reason string // "" = accepted
		msg    string
	}{
		{"P-256", good, "", ""},
		{"P-384", csr(t, p384, nil, web.String()), "", ""},
		{"RSA 2048", csr(t, rsa2048, nil, web.String()), "", ""},
		{"CA false is fine", csr(t, p256, basicConstraints(t, false), web.String()), "", ""},
		{"P-224", csr(t, p224, nil, web.String()), signer.ReasonKey, "curve P-224 not allowed"},
		{"RSA 1024", csr(t, rsa1024, nil, web.String()), signer.ReasonKey, "RSA key of 1024 bits"},
		{"Ed25519", csr(t, ed, nil, web.String()), signer.ReasonKey, "key type Ed25519 not allowed"},
		{"no SAN", csr(t, p256, nil), signer.ReasonSAN, "has 0 URI SANs"},
		{"two SANs", csr(t, p256, nil, web.String(), "spiffe://cluster.local/ns/shop/sa/db"), signer.ReasonSAN, "has 2 URI SANs"},
		{"other identity", csr(t, p256, nil, "spiffe://cluster.local/ns/shop/sa/db"), signer.ReasonSAN, "is not the requested identity"},
		{"DNS SAN too", csr(t, p256, &x509.CertificateRequest{DNSNames: []string{"a"}}, web.String()), signer.ReasonSAN, "only the URI SAN"},
		{"CA bit", csr(t, p256, basicConstraints(t, true), web.String()), signer.ReasonCA, "requests a CA certificate"},
		{"bad signature", tampered, "", ""}, // decided below: malformed or signature
		{"empty", nil, signer.ReasonMalformed, "empty"},
		{"not PEM", []byte("hello"), signer.ReasonMalformed, "no PEM block"},
		{"wrong block", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), signer.ReasonMalformed, "want CERTIFICATE REQUEST"},
		{"trailing data", append(append([]byte{}, good...), good...), signer.ReasonMalformed, "data after the PEM block"},
		{"huge", []byte(strings.Repeat("A", signer.MaxCSRBytes+1)), signer.ReasonMalformed, "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signer.CheckCSR(tt.csr, web)
			if tt.name == "bad signature" {
				if err == nil || fault.KindOf(err) != fault.InvalidArgument {
					t.Fatalf("tampered CSR: %v", err)
				}
				return
			}
			if tt.reason == "" {
				if err != nil || got == nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if fault.KindOf(err) != fault.InvalidArgument || fault.ReasonOf(err) != tt.reason || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v (%s/%s), want %s containing %q", err, fault.KindOf(err), fault.ReasonOf(err), tt.reason, tt.msg)
			}
		})
	}
}

func TestTTLPolicy(t *testing.T) {
	p := signer.TTLPolicy{Default: 24 * time.Hour, Max: 90 * 24 * time.Hour}
	for _, tt := range []struct {
		in, want time.Duration
		err      bool
	}{
		{0, 24 * time.Hour, false},
		{time.Hour, time.Hour, false},
		{1000 * 24 * time.Hour, 90 * 24 * time.Hour, false},
		{-time.Second, 0, true},
	} {
		got, err := p.Resolve(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("Resolve(%s) = %s, %v", tt.in, got, err)
		}
	}
}

func TestIssue(t *testing.T) {
	m, err := keystore.GenerateRoot(web.TrustDomain(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := ecKey(t, elliptic.P256())
	// The CSR asks for more than the CA grants: a CA bit is refused
	// earlier; here, subject, extra extensions and key usages are ignored.
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin"}}
	c, err := signer.CheckCSR(csr(t, key, tmpl, web.String()), web)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	chain, err := signer.Issue(m, c, web, 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if len(chain) != 2 || !chain[1].Equal(m.Root()) {
		t.Fatal("chain is not leaf, root")
	}
	if leaf.IsCA || leaf.Subject.CommonName != "" || len(leaf.URIs) != 1 || leaf.URIs[0].String() != web.String() {
		t.Fatalf("leaf: CA %v, CN %q, URIs %v", leaf.IsCA, leaf.Subject.CommonName, leaf.URIs)
	}
	// Capped by the signing certificate's own expiry (1h here).
	if !leaf.NotAfter.Equal(m.Signing().NotAfter) {
		t.Errorf("NotAfter %s beyond the CA's %s", leaf.NotAfter, m.Signing().NotAfter)
	}
	if err := leaf.CheckSignatureFrom(m.Root()); err != nil {
		t.Fatal(err)
	}
}

// FuzzCSR feeds arbitrary bytes through the CSR path. Whatever is
// accepted must yield a certificate that carries exactly the requested
// identity, no CA bit, and verifies.
func FuzzCSR(f *testing.F) {
	key := ecKey(f, elliptic.P256())
	f.Add(csr(f, key, nil, web.String()))
	f.Add(csr(f, key, nil, web.String(), "spiffe://cluster.local/ns/shop/sa/db"))
	f.Add(csr(f, key, basicConstraints(f, true), web.String()))
	f.Add(csr(f, key, &x509.CertificateRequest{DNSNames: []string{"x"}}, web.String()))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{})
	m, err := keystore.GenerateRoot(web.TrustDomain(), time.Hour, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := signer.CheckCSR(data, web)
		if err != nil {
			if fault.KindOf(err) != fault.InvalidArgument {
				t.Fatalf("non-InvalidArgument failure: %v", err)
			}
			return
		}
		chain, err := signer.Issue(m, c, web, time.Hour, time.Now())
		if err != nil {
			t.Fatalf("accepted CSR failed to issue: %v", err)
		}
		leaf := chain[0]
		if leaf.IsCA || len(leaf.URIs) != 1 || leaf.URIs[0].String() != web.String() || len(leaf.DNSNames) != 0 {
			t.Fatalf("issued certificate breaks the rules: CA %v, URIs %v, DNS %v", leaf.IsCA, leaf.URIs, leaf.DNSNames)
		}
		if err := leaf.CheckSignatureFrom(m.Root()); err != nil {
			t.Fatal(err)
		}
	})
}
