// Package signer checks certificate signing requests and issues X.509-SVIDs.
//
// A CSR is untrusted input: CheckCSR bounds its size, requires exactly one
// PEM block, a valid self-signature, an ECDSA P-256/P-384 or RSA 2048–8192
// key, exactly one URI SAN equal to the identity the caller is entitled to
// and no other SAN, and no request for a CA certificate. Only the CSR's
// public key is taken over into the certificate; the CA decides everything
// else (identity, validity, key usages), so nothing a client smuggles into
// a CSR reaches a certificate. Failures are fault.InvalidArgument with the
// reason in the message.
package signer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/fault"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

// MaxCSRBytes bounds the PEM text of a CSR; real ones are below 2 KiB.
const MaxCSRBytes = 16 << 10

// RSA key sizes accepted. The upper bound keeps a hostile CSR from making
// the CA verify a huge signature.
const (
	MinRSABits = 2048
	MaxRSABits = 8192
)

// Clock skew allowance: certificates are valid from a minute ago.
const backdate = time.Minute

// Failure reasons (metric and audit labels).
const (
	ReasonMalformed = "csr_malformed"
	ReasonSignature = "csr_signature"
	ReasonKey       = "csr_key"
	ReasonSAN       = "csr_san"
	ReasonCA        = "csr_ca"
	ReasonTTL       = "ttl"
)

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

func invalid(reason, format string, args ...any) error {
	return fault.New(fault.InvalidArgument, reason, "invalid CSR: "+format, args...)
}

// CheckCSR parses a PEM CSR and checks it against the identity want.
func CheckCSR(csrPEM []byte, want spiffe.Identity) (*x509.CertificateRequest, error) {
	if len(csrPEM) == 0 {
		return nil, invalid(ReasonMalformed, "empty")
	}
	if len(csrPEM) > MaxCSRBytes {
		return nil, invalid(ReasonMalformed, "%d bytes, at most %d allowed", len(csrPEM), MaxCSRBytes)
	}
	block, rest := pem.Decode(csrPEM)
	if block == nil {
		return nil, invalid(ReasonMalformed, "no PEM block")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, invalid(ReasonMalformed, "PEM block %q, want CERTIFICATE REQUEST", truncate(block.Type))
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, invalid(ReasonMalformed, "data after the PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, invalid(ReasonMalformed, "%s", truncate(err.Error()))
	}
	if err := checkKey(csr); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, invalid(ReasonSignature, "signature does not verify: %s", truncate(err.Error()))
	}
	if err := checkSANs(csr, want); err != nil {
		return nil, err
	}
	if err := checkNotCA(csr); err != nil {
		return nil, err
	}
	return csr, nil
}

func checkKey(csr *x509.CertificateRequest) error {
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return invalid(ReasonKey, "ECDSA curve %s not allowed; use P-256 or P-384", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits || n > MaxRSABits {
			return invalid(ReasonKey, "RSA key of %d bits; allowed %d to %d", n, MinRSABits, MaxRSABits)
		}
	default:
		return invalid(ReasonKey, "key type %s not allowed; use ECDSA P-256/P-384 or RSA >= %d", csr.PublicKeyAlgorithm, MinRSABits)
	}
	return nil
}

func checkSANs(csr *x509.CertificateRequest, want spiffe.Identity) error {
	switch {
	case len(csr.URIs) != 1:
		return invalid(ReasonSAN, "has %d URI SANs, want exactly one (%s)", len(csr.URIs), want)
	case len(csr.DNSNames) != 0 || len(csr.IPAddresses) != 0 || len(csr.EmailAddresses) != 0:
		return invalid(ReasonSAN, "has DNS, IP or e-mail SANs; only the URI SAN %s is allowed", want)
	}
	if got := csr.URIs[0].String(); got != want.String() {
		return invalid(ReasonSAN, "URI SAN %q is not the requested identity %s", truncate(got), want)
	}
	return nil
}

// checkNotCA rejects a CSR that asks for basic constraints with cA set.
func checkNotCA(csr *x509.CertificateRequest) error {
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		rest, err := asn1.Unmarshal(ext.Value, &bc)
		if err != nil || len(rest) != 0 {
			return invalid(ReasonCA, "malformed basic constraints extension")
		}
		if bc.IsCA {
			return invalid(ReasonCA, "requests a CA certificate")
		}
	}
	return nil
}

func truncate(s string) string {
	const maxLen = 200
	if len(s) > maxLen {
		return s[:maxLen] + "..."
	}
	return s
}

// TTLPolicy resolves requested lifetimes.
type TTLPolicy struct {
	Default time.Duration
	Max     time.Duration
}

// Resolve returns the lifetime to issue for a request of requested (0:
// default). Lifetimes above Max are capped to Max, as Istio clients expect
// a certificate rather than an error; negative ones are invalid.
func (p TTLPolicy) Resolve(requested time.Duration) (time.Duration, error) {
	switch {
	case requested < 0:
		return 0, fault.New(fault.InvalidArgument, ReasonTTL, "requested validity %s is negative", requested)
	case requested == 0:
		return min(p.Default, p.Max), nil
	case requested > p.Max:
		return p.Max, nil
	}
	return requested, nil
}

// Issue signs a leaf for id with csr's public key under authority a, valid
// from a minute before now for ttl (never beyond the signing certificate).
// It returns the chain leaf first, root last.
func Issue(a *keystore.Material, csr *x509.CertificateRequest, id spiffe.Identity, ttl time.Duration, now time.Time) ([]*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("signer: serial: %w", err)
	}
	notAfter := now.Add(ttl)
	if signing := a.Signing(); notAfter.After(signing.NotAfter) {
		notAfter = signing.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{id.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Signing(), csr.PublicKey, a.Key)
	if err != nil {
		return nil, fmt.Errorf("signer: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("signer: parse issued certificate: %w", err)
	}
	return append([]*x509.Certificate{leaf}, a.Chain...), nil
}

// ChainPEM encodes a chain as one PEM string per certificate (Istio's
// cert_chain).
func ChainPEM(chain []*x509.Certificate) []string {
	out := make([]string, len(chain))
	for i, c := range chain {
		out[i] = keystore.CertificatePEM(c)
	}
	return out
}
