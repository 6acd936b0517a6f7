package spiffetest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMintedSVIDs(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	root := spiffetest.NewCA(t, td)
	inter1 := root.NewIntermediate(t)
	inter2 := inter1.NewIntermediate(t)
	workload := spiffe.MustParse("spiffe://cluster.local/ns/default/sa/web")

	tests := []struct {
		name      string
		ca        *spiffetest.CA
		opts      []spiffetest.SVIDOption
		wantChain int // certificates in the SVID, leaf included
		wantErr   bool
	}{
		{"root-signed", root, nil, 1, false},
		{"one intermediate", inter1, nil, 2, false},
		{"two intermediates", inter2, nil, 3, false},
		{"expired", root, []spiffetest.SVIDOption{spiffetest.Expired()}, 1, true},
		{"not yet valid", root, []spiffetest.SVIDOption{spiffetest.WithValidity(time.Now().Add(time.Hour), time.Now().Add(2*time.Hour))}, 1, true},
		{"custom ttl", root, []spiffetest.SVIDOption{spiffetest.WithTTL(time.Minute)}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svid := tt.ca.MintSVID(t, workload, tt.opts...)
			if len(svid.Certificates) != tt.wantChain {
				t.Fatalf("chain has %d certificates, want %d", len(svid.Certificates), tt.wantChain)
			}
			if svid.ID != workload.ID() {
				t.Errorf("ID = %s, want %s", svid.ID, workload)
			}
			// The minted SVID must survive go-spiffe's own parsing rules.
			certPEM, keyPEM, err := svid.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := x509svid.Parse(certPEM, keyPEM); err != nil {
				t.Fatalf("x509svid.Parse: %v", err)
			}
			id, _, err := x509svid.Verify(svid.Certificates, root.Bundle())
			if tt.wantErr {
				if err == nil {
					t.Error("Verify succeeded, want failure")
				}
				return
			}
			if err != nil || id != workload.ID() {
				t.Errorf("Verify = %s, %v", id, err)
			}
		})
	}
}

func TestCAsAreIndependent(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	a, b := spiffetest.NewCA(t, td), spiffetest.NewCA(t, td)
	svid := a.MintSVID(t, spiffe.MustParse("spiffe://cluster.local/ambit/node/n1"))
	if _, _, err := x509svid.Verify(svid.Certificates, b.Bundle()); err == nil {
		t.Error("an SVID from one CA verified against another CA's bundle")
	}
}

func TestForeignTrustDomain(t *testing.T) {
	foreignTD := spiffeid.RequireTrustDomainFromString("evil.example")
	foreign := spiffetest.NewCA(t, foreignTD)
	if foreign.TrustDomain() != foreignTD || foreign.Bundle().TrustDomain() != foreignTD {
		t.Errorf("trust domain = %s / bundle %s, want %s", foreign.TrustDomain(), foreign.Bundle().TrustDomain(), foreignTD)
	}
	id := spiffeid.RequireFromString("spiffe://evil.example/anything/goes")
	svid := foreign.MintSVIDForID(t, id)
	if got, _, err := x509svid.Verify(svid.Certificates, foreign.Bundle()); err != nil || got != id {
		t.Errorf("Verify = %s, %v", got, err)
	}
}

func TestSource(t *testing.T) {
	ca := spiffetest.NewCA(t, spiffe.DefaultTrustDomain())
	want := spiffe.MustParse("spiffe://cluster.local/ambit/xds")
	got, err := ca.Source(t, want).Identity()
	if err != nil || got != want {
		t.Errorf("Source identity = %v, %v; want %v", got, err, want)
	}
}

func TestPEM(t *testing.T) {
	ca := spiffetest.NewCA(t, spiffe.DefaultTrustDomain()).NewIntermediate(t)
	block, _ := pem.Decode(ca.CertificatePEM())
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("CertificatePEM: bad block %v", block)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.Equal(ca.Certificate()) || !cert.IsCA {
		t.Errorf("CertificatePEM round trip: %v", err)
	}
	if len(ca.Intermediates()) != 1 || !ca.Intermediates()[0].Equal(cert) {
		t.Errorf("Intermediates() = %d certificates, want this CA's own", len(ca.Intermediates()))
	}
	if err := cert.CheckSignatureFrom(ca.Root()); err != nil {
		t.Errorf("intermediate not signed by root: %v", err)
	}
	keyBlock, _ := pem.Decode(ca.KeyPEM(t))
	if keyBlock == nil {
		t.Fatal("KeyPEM: no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, ok := key.(*ecdsa.PrivateKey)
	if !ok || !ecKey.Equal(ca.Signer()) {
		t.Error("KeyPEM does not hold the CA's key")
	}
	if ecKey.Curve != elliptic.P256() {
		t.Errorf("CA key curve = %s, want P-256", ecKey.Curve.Params().Name)
	}
}
