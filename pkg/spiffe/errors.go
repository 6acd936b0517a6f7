package spiffe

import "errors"

// Sentinel errors, so callers can map failures to status codes and audit
// reasons with errors.Is instead of matching text.
var (
	// ErrInvalidIdentity: a string or SPIFFE ID is not one of Ambit's
	// identity shapes, or one of its parts breaks the naming rules.
	ErrInvalidIdentity = errors.New("spiffe: invalid identity")

	// ErrNoPeerCertificate: the peer presented no certificate.
	ErrNoPeerCertificate = errors.New("spiffe: peer presented no certificate")

	// ErrUntrusted: the peer's certificate chain does not verify against the
	// trust bundle of its trust domain (unknown root, foreign trust domain,
	// expired, not yet valid, malformed SVID).
	ErrUntrusted = errors.New("spiffe: peer certificate not trusted")

	// ErrUnauthorized: the peer's certificate is trusted but its identity is
	// not allowed here.
	ErrUnauthorized = errors.New("spiffe: peer identity not authorized")

	// ErrApplicationProtocol: the handshake did not negotiate one of the
	// required ALPN protocols.
	ErrApplicationProtocol = errors.New("spiffe: required application protocol not negotiated")

	// ErrNoSVID: a Source holds no X.509-SVID (yet).
	ErrNoSVID = errors.New("spiffe: no X.509-SVID")

	// ErrNoBundle: a Source holds no trust bundle for a trust domain.
	ErrNoBundle = errors.New("spiffe: no trust bundle for trust domain")
)
