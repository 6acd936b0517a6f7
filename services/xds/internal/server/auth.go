package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Principal is an authenticated caller.
type Principal struct {
	Identity spiffe.Identity
	// Method is how it was authenticated: "certificate" or "bearer".
	Method string
}

// Authenticator establishes who is calling from a stream's context (TLS
// state, metadata). It returns ErrNoCredentials (wrapped) when the caller
// presented nothing it understands, so that a Chain can try the next, and
// any other error to refuse the caller outright.
type Authenticator interface {
	Authenticate(ctx context.Context) (Principal, error)
}

// Chain tries each Authenticator in turn; the first that does not report
// ErrNoCredentials decides. A client certificate is checked before a
// bearer token, so a bad certificate is never overridden by a token.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(ctx context.Context) (Principal, error) {
	for _, a := range c {
		p, err := a.Authenticate(ctx)
		if errors.Is(err, ErrNoCredentials) {
			continue
		}
		return p, err
	}
	return Principal{}, fmt.Errorf("%w: a client certificate or a bearer node credential is required", ErrNoCredentials)
}

// CertificateAuthenticator authenticates callers by the client certificate
// their TLS handshake verified (spiffe.OptionalClientCertServerConfig or
// ServerConfig did the chain verification). It admits proxies only: nodes
// (ztunnels), workloads (waypoints and gateways run as their service
// account) and the gateway controller's control-plane identity, all of
// TrustDomain.
type CertificateAuthenticator struct {
	TrustDomain spiffeid.TrustDomain
}

// Authenticate implements Authenticator.
func (a CertificateAuthenticator) Authenticate(ctx context.Context) (Principal, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Principal{}, fmt.Errorf("%w: no peer", ErrNoCredentials)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Principal{}, fmt.Errorf("%w: not a TLS connection", ErrNoCredentials)
	}
	id, err := spiffe.PeerIdentity(info.State)
	if errors.Is(err, spiffe.ErrNoPeerCertificate) {
		return Principal{}, fmt.Errorf("%w: %w", ErrNoCredentials, err)
	}
	if err != nil {
		return Principal{}, coded(codes.Unauthenticated, "client certificate: %v", err)
	}
	if err := AdmitProxy(a.TrustDomain, id); err != nil {
		return Principal{}, err
	}
	return Principal{Identity: id, Method: "certificate"}, nil
}

// AdmitProxy checks that an authenticated identity may hold an xDS stream
// at all; Authenticators (a bearer one too) call it.
func AdmitProxy(td spiffeid.TrustDomain, id spiffe.Identity) error {
	if id.TrustDomain() != td {
		return coded(codes.PermissionDenied, "%s is not of trust domain %s", id, td.Name())
	}
	switch id.Kind() {
	case spiffe.KindNode, spiffe.KindWorkload:
		return nil
	case spiffe.KindControlPlane:
		if id.Component() == spiffe.ComponentGateway {
			return nil
		}
	}
	return coded(codes.PermissionDenied, "%s may not subscribe to xDS", id)
}

// authorizeProxy checks that a caller subscribes on its own behalf: a node
// only as a proxy of that node, a workload only for its own namespace. The
// gateway controller runs proxies for others and may name any.
func authorizeProxy(p Principal, proxy proxyInfo) error {
	id := p.Identity
	switch id.Kind() {
	case spiffe.KindNode:
		if proxy.NodeName != id.Node() {
			return coded(codes.PermissionDenied, "node %q may not subscribe as proxy %q (node %q)", id.Node(), proxy.ID, proxy.NodeName)
		}
		return nil
	case spiffe.KindWorkload:
		if proxy.Namespace != id.Namespace() {
			return coded(codes.PermissionDenied, "%s may not subscribe as proxy %q (namespace %q)", id, proxy.ID, proxy.Namespace)
		}
		return nil
	case spiffe.KindControlPlane:
		return nil
	}
	return coded(codes.PermissionDenied, "%s may not subscribe to xDS", id)
}
