package spiffe

import (
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// Authorizer decides whether a peer whose certificate has verified may
// connect. It returns nil to allow, or an error (the helpers here wrap
// ErrUnauthorized) to refuse the handshake.
//
// Every helper takes the trust domain it allows: chain verification alone
// would let in any trust domain the source holds a bundle for (federation).
type Authorizer func(peer Identity) error

// AuthorizeMemberOf allows every Ambit identity of trust domain td.
func AuthorizeMemberOf(td spiffeid.TrustDomain) Authorizer {
	return func(peer Identity) error {
		return checkTrustDomain(td, peer)
	}
}

// AuthorizeWorkloads allows workload identities of td only. Data-plane peers
// (HBONE) use it: node and control-plane identities chain to the same root
// and must not pass as workloads (DESIGN §4).
func AuthorizeWorkloads(td spiffeid.TrustDomain) Authorizer {
	return authorizeKind(td, KindWorkload)
}

// AuthorizeNodes allows node identities of td only.
func AuthorizeNodes(td spiffeid.TrustDomain) Authorizer {
	return authorizeKind(td, KindNode)
}

// AuthorizeAdmins allows admin identities of td only, named or not.
func AuthorizeAdmins(td spiffeid.TrustDomain) Authorizer {
	return authorizeKind(td, KindAdmin)
}

// AuthorizeComponents allows the control-plane identities of td for the
// listed components only.
func AuthorizeComponents(td spiffeid.TrustDomain, components ...Component) Authorizer {
	allowed := slices.Clone(components)
	return func(peer Identity) error {
		if err := checkTrustDomain(td, peer); err != nil {
			return err
		}
		if peer.Kind() != KindControlPlane || !slices.Contains(allowed, peer.Component()) {
			return fmt.Errorf("%w: %s is not one of the control-plane components %v", ErrUnauthorized, peer, allowed)
		}
		return nil
	}
}

// AuthorizeIdentity allows exactly one identity, e.g. the destination a
// client dialed.
func AuthorizeIdentity(want Identity) Authorizer {
	return func(peer Identity) error {
		if peer != want {
			return fmt.Errorf("%w: got %s, want %s", ErrUnauthorized, peer, want)
		}
		return nil
	}
}

// AuthorizeAnyOf allows a peer that any of authorizers allows, e.g. xds
// serving ztunnels (nodes) and waypoints (workloads). With no authorizers it
// allows nobody.
func AuthorizeAnyOf(authorizers ...Authorizer) Authorizer {
	all := slices.Clone(authorizers)
	return func(peer Identity) error {
		for _, authorize := range all {
			if authorize(peer) == nil {
				return nil
			}
		}
		return fmt.Errorf("%w: %s matches none of the allowed identities", ErrUnauthorized, peer)
	}
}

func authorizeKind(td spiffeid.TrustDomain, kind Kind) Authorizer {
	return func(peer Identity) error {
		if err := checkTrustDomain(td, peer); err != nil {
			return err
		}
		if peer.Kind() != kind {
			return fmt.Errorf("%w: %s is a %s identity, want %s", ErrUnauthorized, peer, peer.Kind(), kind)
		}
		return nil
	}
}

func checkTrustDomain(td spiffeid.TrustDomain, peer Identity) error {
	if td.IsZero() || peer.TrustDomain() != td {
		return fmt.Errorf("%w: %s is not in trust domain %q", ErrUnauthorized, peer, td.Name())
	}
	return nil
}

// TLSConfigAuthorizer adapts a to go-spiffe's tlsconfig.Authorizer, for code
// built on go-spiffe's own TLS or gRPC credential helpers. IDs that are not
// Ambit identities are refused.
func TLSConfigAuthorizer(a Authorizer) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		peer, err := FromID(id)
		if err != nil {
			return err
		}
		if a == nil {
			return fmt.Errorf("%w: %s: no authorizer configured", ErrUnauthorized, peer)
		}
		return a(peer)
	}
}
