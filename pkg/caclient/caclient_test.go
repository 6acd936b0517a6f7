package caclient_test

import (
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/ambitmesh/ambit/pkg/caclient"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"
)

func TestNewCSR(t *testing.T) {
	id, err := spiffe.NewWorkload(spiffe.DefaultTrustDomain(), "shop", "frontend")
	if err != nil {
		t.Fatal(err)
	}
	_, csrPEM, err := caclient.NewCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(csrPEM))
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != "spiffe://cluster.local/ns/shop/sa/frontend" || len(csr.DNSNames) != 0 {
		t.Fatalf("CSR SANs: %v %v", csr.URIs, csr.DNSNames)
	}
}

func pemOf(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func TestSVIDAndBundleFromCAResponse(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	ca := spiffetest.NewCA(t, td)
	inter := ca.NewIntermediate(t)
	id, _ := spiffe.NewNode(td, "node-a")
	minted := inter.MintSVID(t, id)
	// leaf, intermediate, root — as the CA answers.
	chain := []string{pemOf(minted.Certificates[0]), pemOf(inter.Certificate()), pemOf(ca.Root())}
	svid, err := caclient.SVIDFromChain(chain, minted.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != id.String() || len(svid.Certificates) != 2 {
		t.Fatalf("svid %s with %d certificates", svid.ID, len(svid.Certificates))
	}
	b, err := caclient.BundleFromProto(&cav1.TrustBundle{TrustDomain: "cluster.local", X509Authorities: []string{pemOf(ca.Root())}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spiffe.VerifyPeer(svid.Certificates, b, spiffe.AuthorizeNodes(td)); err != nil {
		t.Fatalf("chain does not verify against the bundle: %v", err)
	}
	if _, err := caclient.SVIDFromChain(chain[:1], minted.PrivateKey); err == nil {
		t.Fatal("a chain without its root was accepted")
	}
	if _, err := caclient.BundleFromProto(&cav1.TrustBundle{TrustDomain: "cluster.local", X509Authorities: []string{"junk"}}); err == nil {
		t.Fatal("a junk root was accepted")
	}
}
