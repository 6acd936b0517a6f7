package spiffe

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// VerifyPeer verifies a peer's certificate chain (leaf first) against the
// bundle of the leaf's trust domain in bundles, parses the leaf's identity
// and asks authorize. Errors wrap ErrNoPeerCertificate, ErrUntrusted,
// ErrInvalidIdentity (trusted, but not an Ambit identity shape) or
// ErrUnauthorized. A nil authorize refuses every peer.
func VerifyPeer(chain []*x509.Certificate, bundles x509bundle.Source, authorize Authorizer) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, ErrNoPeerCertificate
	}
	id, _, err := x509svid.Verify(chain, bundles)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	peer, err := FromID(id)
	if err != nil {
		return Identity{}, err
	}
	if authorize == nil {
		return Identity{}, fmt.Errorf("%w: %s: no authorizer configured", ErrUnauthorized, peer)
	}
	if err := authorize(peer); err != nil {
		if !errors.Is(err, ErrUnauthorized) {
			err = fmt.Errorf("%w: %s: %w", ErrUnauthorized, peer, err)
		}
		return Identity{}, err
	}
	return peer, nil
}

// peerVerifier is the VerifyConnection hook of the configurations here.
type peerVerifier struct {
	bundles      x509bundle.Source
	authorize    Authorizer
	certOptional bool
	protocols    []string // required ALPN protocols; none required if empty
}

func (v *peerVerifier) verifyConnection(cs tls.ConnectionState) error {
	if len(v.protocols) > 0 && !slices.Contains(v.protocols, cs.NegotiatedProtocol) {
		return fmt.Errorf("%w: negotiated %q, want one of %q", ErrApplicationProtocol, cs.NegotiatedProtocol, v.protocols)
	}
	if len(cs.PeerCertificates) == 0 && v.certOptional {
		return nil
	}
	_, err := VerifyPeer(cs.PeerCertificates, v.bundles, v.authorize)
	return err
}
