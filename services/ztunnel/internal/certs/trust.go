package certs

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/ambitmesh/ambit/pkg/nodecred"
)

// Trust is where the trust bundles that verify peers come from, and how
// their changes are announced. The node credential is the usual one
// (NodeTrust): it follows the CA's trust bundle stream, so root rotation
// reaches every workload certificate's source through it.
type Trust interface {
	// Bundles returns the current bundles, one per trust domain; the
	// mesh's own at least.
	Bundles() ([]*x509bundle.Bundle, error)
	// Changed returns a channel closed at the next change. Callers take it
	// before reading Bundles, so no change falls in between. Spurious
	// wake-ups are fine.
	Changed() <-chan struct{}
}

// NodeTrust returns the trust bundles of a node credential. Its Changed
// also fires on node certificate renewals; the Manager ignores those.
func NodeTrust(c *nodecred.Credential) Trust { return nodeTrust{c} }

type nodeTrust struct{ c *nodecred.Credential }

func (t nodeTrust) Changed() <-chan struct{} { return t.c.Changed() }

func (t nodeTrust) Bundles() ([]*x509bundle.Bundle, error) {
	td := t.c.Identity().TrustDomain()
	b, err := t.c.Source().GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("node credential: %w", err)
	}
	return []*x509bundle.Bundle{b}, nil
}

// sameBundles reports whether a and b hold the same roots per trust domain,
// in the same order (Trust implementations return a stable order).
func sameBundles(a, b []*x509bundle.Bundle) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
