package server

import (
	"context"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Caller is who made a request.
type Caller struct {
	// Identity is the caller's SPIFFE identity from its client certificate.
	Identity spiffe.Identity
	// Insecure is set in the explicit development mode that serves plaintext
	// on loopback and treats every local caller as an admin.
	Insecure bool
}

func (c Caller) String() string {
	if c.Insecure {
		return "insecure-loopback"
	}
	return c.Identity.String()
}

// isAdmin: the admin identity, or anyone in insecure-loopback mode.
func (c Caller) isAdmin() bool { return c.Insecure || c.Identity.Kind() == spiffe.KindAdmin }

// canRead: admins, control-plane services and nodes may read configuration.
func (c Caller) canRead() bool {
	switch {
	case c.isAdmin():
		return true
	case c.Identity.Kind() == spiffe.KindControlPlane, c.Identity.Kind() == spiffe.KindNode:
		return true
	}
	return false
}

var errUnauthenticated = errors.New("no verified client identity")

// callerFrom reads the caller's identity from the verified TLS connection.
func callerFrom(ctx context.Context, insecureLoopback bool) (Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Caller{}, errUnauthenticated
	}
	if insecureLoopback {
		if !isLoopback(p.Addr) {
			return Caller{}, fmt.Errorf("%w: insecure mode serves loopback callers only, not %s", errUnauthenticated, p.Addr)
		}
		return Caller{Insecure: true}, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Caller{}, errUnauthenticated
	}
	id, err := spiffe.PeerIdentity(info.State)
	if err != nil {
		return Caller{}, fmt.Errorf("%w: %v", errUnauthenticated, err)
	}
	return Caller{Identity: id}, nil
}

func isLoopback(a net.Addr) bool {
	switch addr := a.(type) {
	case *net.TCPAddr:
		return addr.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}
