package keystore

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Origins of an authority.
const (
	OriginGenerated = "generated"
	OriginOperator  = "operator"
)

// Material is a signing authority in the clear: the chain from the
// signing certificate to its self-signed root (root last; one certificate
// when the root signs directly) and the signing key.
type Material struct {
	Chain  []*x509.Certificate
	Key    crypto.Signer
	Origin string
}

// Root is the chain's self-signed root.
func (m *Material) Root() *x509.Certificate { return m.Chain[len(m.Chain)-1] }

// Signing is the certificate leaves are issued under.
func (m *Material) Signing() *x509.Certificate { return m.Chain[0] }

// AuthorityID is the stable id of an authority: hex of the first 8 bytes of
// the SHA-256 of its signing certificate.
func AuthorityID(signing *x509.Certificate) string {
	sum := sha256.Sum256(signing.Raw)
	return hex.EncodeToString(sum[:8])
}

// GenerateRoot makes a self-signed ECDSA P-256 root for td, valid from an
// hour ago (clock skew) for validity. The root signs leaves directly: with
// the key sealed in etcd and the CA the only user, an intermediate would
// add a certificate to every handshake and protect nothing more.
func GenerateRoot(td spiffeid.TrustDomain, validity time.Duration, now time.Time) (*Material, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keystore: generate root key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("keystore: root serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Ambit"},
			CommonName:   fmt.Sprintf("Ambit root CA %s %s", td.Name(), now.UTC().Format("2006-01-02T15:04:05Z")),
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("keystore: create root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("keystore: parse root: %w", err)
	}
	return &Material{Chain: []*x509.Certificate{cert}, Key: key, Origin: OriginGenerated}, nil
}

// ParseMaterial reads an operator-provided authority: chainPEM holds the
// signing certificate first, then any intermediates, then the root (the
// root may be the signing certificate itself), keyPEM the signing key.
func ParseMaterial(chainPEM, keyPEM []byte, td spiffeid.TrustDomain, now time.Time) (*Material, error) {
	chain, err := ParseCertificates(chainPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	m := &Material{Chain: chain, Key: key, Origin: OriginOperator}
	if err := m.validate(now); err != nil {
		return nil, err
	}
	return m, nil
}

// validate checks what signing with m needs: every certificate is a CA
// valid now, each is signed by the next, the last is self-signed, the
// signing certificate may sign certificates, and the key matches it.
func (m *Material) validate(now time.Time) error {
	if len(m.Chain) == 0 {
		return errors.New("keystore: empty certificate chain")
	}
	for i, c := range m.Chain {
		if !c.BasicConstraintsValid || !c.IsCA {
			return fmt.Errorf("keystore: certificate %d (%s) is not a CA", i, c.Subject)
		}
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return fmt.Errorf("keystore: certificate %d (%s) is not valid now (%s to %s)", i, c.Subject, c.NotBefore, c.NotAfter)
		}
		parent := c
		if i+1 < len(m.Chain) {
			parent = m.Chain[i+1]
		}
		if err := c.CheckSignatureFrom(parent); err != nil {
			return fmt.Errorf("keystore: certificate %d (%s) is not signed by %s: %w", i, c.Subject, parent.Subject, err)
		}
	}
	if m.Signing().KeyUsage != 0 && m.Signing().KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("keystore: signing certificate lacks the certSign key usage")
	}
	if !publicKeysEqual(m.Signing().PublicKey, m.Key.Public()) {
		return errors.New("keystore: signing key does not match the signing certificate")
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// ParseCertificates decodes every CERTIFICATE block of pemBytes.
func ParseCertificates(pemBytes []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := bytes.TrimSpace(pemBytes)
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("keystore: trailing data that is not PEM")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("keystore: unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("keystore: parse certificate: %w", err)
		}
		out = append(out, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(out) == 0 {
		return nil, errors.New("keystore: no certificate found")
	}
	return out, nil
}

// ParsePrivateKey decodes a PKCS#8, SEC1 (EC) or PKCS#1 (RSA) PEM key.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("keystore: no PEM private key found")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("keystore: unexpected PEM block %q for a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: parse private key: %w", err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("keystore: unsupported private key type %T", key)
}

// EncodeCertificates returns the certificates as concatenated PEM.
func EncodeCertificates(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// CertificatePEM returns one certificate as PEM text.
func CertificatePEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}
