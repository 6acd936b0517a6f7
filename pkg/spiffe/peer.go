package spiffe

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// PeerIdentity returns the identity in the peer certificate of a completed
// handshake, or an error wrapping ErrNoPeerCertificate when the peer sent
// none (possible only with OptionalClientCertServerConfig).
//
// It parses but does not verify: it is meant for connections made with this
// package's configurations, which verified and authorized the peer during
// the handshake. For gRPC, pass the State of the credentials.TLSInfo found
// in peer.FromContext(ctx).AuthInfo; this keeps the package free of gRPC.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if !cs.HandshakeComplete {
		return Identity{}, errors.New("spiffe: TLS handshake not complete")
	}
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	return FromCertificate(cs.PeerCertificates[0])
}

// FromCertificate returns the identity in cert's URI SAN. The certificate
// must carry exactly one URI SAN (X509-SVID rule). It does not verify cert.
func FromCertificate(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: certificate is nil", ErrInvalidIdentity)
	}
	id, err := x509svid.IDFromCert(cert)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalidIdentity, err)
	}
	return FromID(id)
}
