package server

import (
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/services/config/internal/resource"
)

// caSignerDomain is the domain of ambit-ca's signer names: the CA of trust
// domain <td> publishes its bundle as the ClusterTrustBundle of signer
// "ambit.io/<td>", named "ambit.io:<td>:bundle".
const caSignerDomain = "ambit.io"

// caSignerName is the signer name of the CA of trust domain td.
func caSignerName(td string) string { return caSignerDomain + "/" + td }

// mayApply is the check before decoding: only callers that may write
// something get to learn what is wrong with their manifest.
func (c Caller) mayApply() bool { return c.isAdmin() || c.isCA() }

// isCA: the CA's own identity, spiffe://<td>/ambit/ca.
func (c Caller) isCA() bool {
	return c.Identity.Kind() == spiffe.KindControlPlane && c.Identity.Component() == spiffe.ComponentCA
}

// authorizeApply decides whether caller may create or update obj. Admins
// may write anything. The CA may write exactly one thing: the
// ClusterTrustBundles of its own signer, ambit.io/<its trust domain>, so it
// can publish its trust bundle as a resource (issue #5) without being able
// to touch any other configuration or another signer's roots. Nobody else
// writes objects (nodes write pod status through UpdateStatus).
func authorizeApply(caller Caller, obj *resource.Object) error {
	if caller.isAdmin() {
		return nil
	}
	if !caller.isCA() {
		return fmt.Errorf("%w: %s may not apply configuration", errPermission, caller)
	}
	// Only ClusterTrustBundle has this spec type.
	spec, ok := obj.Spec.(*certificatesv1.ClusterTrustBundleSpec)
	if !ok {
		return fmt.Errorf("%w: %s may apply only ClusterTrustBundles, not %s", errPermission, caller, obj.Kind)
	}
	if want := caSignerName(caller.Identity.TrustDomain().Name()); spec.SignerName != want {
		return fmt.Errorf("%w: %s may apply only ClusterTrustBundles of signer %q, not %q", errPermission, caller, want, spec.SignerName)
	}
	return nil
}
