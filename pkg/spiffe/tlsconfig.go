package spiffe

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Why not go-spiffe's tlsconfig.MTLSServerConfig: it verifies peers in
// VerifyPeerCertificate, which Go skips on session resumption, so a resumed
// session would bypass a root removed from the bundle since. These configs
// verify in VerifyConnection, which runs on every handshake, resumed or not.

// ServerConfig returns a server configuration that presents src's SVID,
// requires a client certificate, verifies it against src's bundle for the
// client's trust domain and lets authorize decide. A nil authorize refuses
// every client.
func ServerConfig(src X509Source, authorize Authorizer, opts ...Option) *tls.Config {
	return serverConfig(src, authorize, false, opts)
}

// OptionalClientCertServerConfig is ServerConfig for endpoints that also
// serve clients without a certificate, such as Istio's ztunnel, which calls
// xds and ca over TLS with "authorization: Bearer <token>" instead (DESIGN
// §2, §4). A client that does present a certificate is verified and
// authorized exactly as by ServerConfig; a bad certificate fails the
// handshake and never falls back to token authentication.
//
// The caller tells the two apart after the handshake: PeerIdentity returns
// the verified identity for a certificate client and an error wrapping
// ErrNoPeerCertificate for the others, and then the caller MUST authenticate
// the request by its bearer token and refuse it when there is none. With
// gRPC, do this in an interceptor from peer.FromContext's
// credentials.TLSInfo.State.
func OptionalClientCertServerConfig(src X509Source, authorize Authorizer, opts ...Option) *tls.Config {
	return serverConfig(src, authorize, true, opts)
}

// ClientConfig returns a client configuration that presents src's SVID (or
// no certificate while src holds none, see NewSource), verifies the server's
// certificate against src's bundle for the server's trust domain and lets
// authorize decide; AuthorizeIdentity pins the expected server. Host names
// play no part: the server is identified by its SPIFFE ID, so ServerName may
// stay empty.
func ClientConfig(src X509Source, authorize Authorizer, opts ...Option) *tls.Config {
	o := newOptions(opts)
	v := &peerVerifier{bundles: src, authorize: authorize, protocols: o.nextProtos}
	return &tls.Config{
		MinVersion:           o.minVersion,
		NextProtos:           o.nextProtos,
		GetClientCertificate: clientCertificate(src),
		// Disables only Go's WebPKI host-name verification, which does not
		// apply to SPIFFE certificates; VerifyConnection verifies the chain
		// and the identity instead.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection:   v.verifyConnection,
	}
}

func serverConfig(src X509Source, authorize Authorizer, certOptional bool, opts []Option) *tls.Config {
	o := newOptions(opts)
	v := &peerVerifier{bundles: src, authorize: authorize, certOptional: certOptional, protocols: o.nextProtos}
	// Go only requests or requires the certificate; VerifyConnection verifies it.
	clientAuth := tls.RequireAnyClientCert
	if certOptional {
		clientAuth = tls.RequestClientCert
	}
	return &tls.Config{
		MinVersion:       o.minVersion,
		NextProtos:       o.nextProtos,
		ClientAuth:       clientAuth,
		GetCertificate:   serverCertificate(src),
		VerifyConnection: v.verifyConnection,
	}
}

// serverCertificate reads the SVID on every handshake, which is what makes
// renewal take effect without a restart.
func serverCertificate(src x509svid.Source) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		svid, err := src.GetX509SVID()
		if err != nil {
			return nil, fmt.Errorf("spiffe: server certificate: %w", err)
		}
		return tlsCertificate(svid)
	}
}

// clientCertificate reads the SVID on every handshake. With no SVID yet it
// presents none, which a server may accept (OptionalClientCertServerConfig).
func clientCertificate(src x509svid.Source) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		svid, err := src.GetX509SVID()
		if errors.Is(err, ErrNoSVID) {
			return &tls.Certificate{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("spiffe: client certificate: %w", err)
		}
		return tlsCertificate(svid)
	}
}

func tlsCertificate(svid *x509svid.SVID) (*tls.Certificate, error) {
	if svid == nil || len(svid.Certificates) == 0 {
		return nil, fmt.Errorf("spiffe: SVID has no certificates: %w", ErrNoSVID)
	}
	chain := make([][]byte, len(svid.Certificates))
	for i, cert := range svid.Certificates {
		chain[i] = cert.Raw
	}
	return &tls.Certificate{
		Certificate: chain,
		PrivateKey:  svid.PrivateKey,
		Leaf:        svid.Certificates[0],
	}, nil
}
