package spiffe

import "github.com/spiffe/go-spiffe/v2/spiffeid"

// DefaultTrustDomainName is the trust domain Ambit uses unless configured
// otherwise; it is Istio's default too, so identities match across the two.
const DefaultTrustDomainName = "cluster.local"

// DefaultTrustDomain returns the trust domain named DefaultTrustDomainName.
// It is a function rather than a variable so nothing can reassign it.
func DefaultTrustDomain() spiffeid.TrustDomain {
	return spiffeid.RequireTrustDomainFromString(DefaultTrustDomainName)
}
