// Package caclient is the client side of the CA (ambit-ca) for every party
// that needs certificates: node agents (join with a token, renew the node
// certificate), ztunnel (certificates for the workloads on its node,
// through Istio's CSR API with ImpersonatedIdentity), control-plane services
// and tools. Keys are ECDSA P-256, generated here and never sent.
package caclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	istioca "istio.io/api/security/v1alpha1"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"
)

// ImpersonatedIdentity is the metadata key of Istio's CSR API that names the
// identity a node asks for on behalf of one of its workloads.
const ImpersonatedIdentity = "ImpersonatedIdentity"

// NewCSR makes a fresh P-256 key and a PEM certificate request whose only
// SAN is id's SPIFFE URI.
func NewCSR(id spiffe.Identity) (crypto.Signer, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	u, err := url.Parse(id.String())
	if err != nil {
		return nil, "", err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		return nil, "", fmt.Errorf("certificate request: %w", err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// SVIDFromChain turns a CA response chain (PEM, leaf first, root last) and
// the key into an SVID; the root is not part of the SVID's chain.
func SVIDFromChain(chain []string, key crypto.Signer) (*x509svid.SVID, error) {
	var certs []*x509.Certificate
	for _, p := range chain {
		rest := []byte(p)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate chain: %w", err)
			}
			certs = append(certs, c)
		}
	}
	if len(certs) < 2 {
		return nil, fmt.Errorf("certificate chain has %d certificates, want leaf … root", len(certs))
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: certs[:len(certs)-1], PrivateKey: key}, nil
}

// BundleFromProto converts the CA's trust bundle message.
func BundleFromProto(b *cav1.TrustBundle) (*x509bundle.Bundle, error) {
	td, err := spiffeid.TrustDomainFromString(b.GetTrustDomain())
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	var roots []*x509.Certificate
	for _, p := range b.GetX509Authorities() {
		blk, _ := pem.Decode([]byte(p))
		if blk == nil {
			return nil, errors.New("trust bundle: a root is not PEM")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("trust bundle: %w", err)
		}
		roots = append(roots, c)
	}
	return x509bundle.FromX509Authorities(td, roots), nil
}

// Join trades a single-use join token for the certificate of the token's
// identity (a node's, usually). conn must verify the CA against the trust
// bundle the operator handed out; no client certificate is needed.
func Join(ctx context.Context, conn grpc.ClientConnInterface, token string, id spiffe.Identity, validity time.Duration) (*x509svid.SVID, *x509bundle.Bundle, error) {
	key, csr, err := NewCSR(id)
	if err != nil {
		return nil, nil, err
	}
	req := &cav1.ExchangeJoinTokenRequest{Token: token, Csr: csr}
	if validity > 0 {
		req.Validity = durationpb.New(validity)
	}
	resp, err := cav1.NewNodeBootstrapServiceClient(conn).ExchangeJoinToken(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	svid, err := SVIDFromChain(resp.GetCertChain(), key)
	if err != nil {
		return nil, nil, err
	}
	b, err := BundleFromProto(resp.GetBundle())
	if err != nil {
		return nil, nil, err
	}
	return svid, b, nil
}

// Certificate asks for a certificate of id through Istio's CSR API. With
// impersonate the caller (a node) asks on behalf of a workload on it;
// otherwise it renews its own identity. validity 0 takes the CA's default.
func Certificate(ctx context.Context, conn grpc.ClientConnInterface, id spiffe.Identity, impersonate bool, validity time.Duration) (*x509svid.SVID, error) {
	key, csr, err := NewCSR(id)
	if err != nil {
		return nil, err
	}
	req := &istioca.IstioCertificateRequest{Csr: csr, ValidityDuration: int64(validity / time.Second)}
	if impersonate {
		req.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{ImpersonatedIdentity: structpb.NewStringValue(id.String())}}
	}
	resp, err := istioca.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, req)
	if err != nil {
		return nil, err
	}
	return SVIDFromChain(resp.GetCertChain(), key)
}
