package authz

import (
	"google.golang.org/protobuf/types/known/emptypb"

	security "github.com/ambitmesh/ambit/proto/istio/security"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/model"
)

// Effective is the PeerAuthentication situation of one workload: the
// oldest mesh, namespace and (selector) workload policies that apply, each
// possibly nil.
type Effective struct {
	Mesh, Namespace, Workload *model.PeerAuthentication
}

// inheritedStrict is the mode from the mesh and namespace levels.
func inheritedStrict(mesh, ns *model.PeerAuthentication) bool {
	strict := mesh != nil && mesh.Mode == model.MTLSStrict
	if ns != nil && ns.Mode != model.MTLSUnset {
		strict = ns.Mode == model.MTLSStrict
	}
	return strict
}

// defaults returns the workload policy's default strictness and the ports
// whose mode differs from it.
func defaults(wl, ns, mesh *model.PeerAuthentication) (strict bool, exceptions []uint32) {
	switch wl.Mode {
	case model.MTLSStrict:
		strict = true
	case model.MTLSPermissive, model.MTLSDisable:
		strict = false
	default:
		strict = inheritedStrict(mesh, ns)
	}
	for _, p := range wl.Ports {
		if (p.Mode == model.MTLSStrict) != strict {
			exceptions = append(exceptions, p.Port)
		}
	}
	return strict, exceptions
}

// Keys returns the PeerAuthentication-derived policy names a workload
// lists: the workload policy's own converted policy when it has port
// exceptions, else the static STRICT policy when the effective mode is
// STRICT, else none.
func (e Effective) Keys(rootNamespace string) []string {
	if e.Workload == nil {
		if inheritedStrict(e.Mesh, e.Namespace) {
			return []string{Name(rootNamespace, StaticStrictName)}
		}
		return nil
	}
	strict, exceptions := defaults(e.Workload, e.Namespace, e.Mesh)
	switch {
	case len(exceptions) > 0:
		return []string{Name(e.Workload.Namespace.String(), ConvertedName(e.Workload.Name))}
	case strict:
		return []string{Name(rootNamespace, StaticStrictName)}
	}
	return nil
}

// ConvertPeerAuthentication builds the converted policy of a selector
// PeerAuthentication (outside the root namespace) given its namespace's
// and the mesh's effective policies. It returns nil when the policy has no
// port exceptions: then workloads use the static policy or none.
func ConvertPeerAuthentication(pa, ns, mesh *model.PeerAuthentication) *security.Authorization {
	if pa.Selector == nil {
		return nil
	}
	strict, exceptions := defaults(pa, ns, mesh)
	if len(exceptions) == 0 {
		return nil
	}
	m := &security.Match{NotPrincipals: []*security.StringMatch{presence()}}
	if strict {
		// Plaintext is denied except on the exempted ports.
		m.NotDestinationPorts = exceptions
	} else {
		// Plaintext is denied only on the STRICT ports.
		m.DestinationPorts = exceptions
	}
	return &security.Authorization{
		Name:      ConvertedName(pa.Name),
		Namespace: pa.Namespace.String(),
		Scope:     security.Scope_WORKLOAD_SELECTOR,
		Action:    security.Action_DENY,
		Groups:    []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{m}}}}},
	}
}

// StaticStrict is the shared policy that denies plaintext.
func StaticStrict(rootNamespace string) *security.Authorization {
	return &security.Authorization{
		Name:      StaticStrictName,
		Namespace: rootNamespace,
		Scope:     security.Scope_WORKLOAD_SELECTOR,
		Action:    security.Action_DENY,
		Groups: []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{{
			NotPrincipals: []*security.StringMatch{presence()},
		}}}}}},
	}
}

func presence() *security.StringMatch {
	return &security.StringMatch{MatchType: &security.StringMatch_Presence{Presence: &emptypb.Empty{}}}
}

// Source is what Build reads: the index's policy lookups.
type Source interface {
	AuthorizationPolicy(namespace, name string) *model.AuthorizationPolicy
	PeerAuthentication(namespace, name string) *model.PeerAuthentication
	// MeshPeerAuthentication and NamespacePeerAuthentication return the
	// oldest policy of that level, or nil.
	MeshPeerAuthentication() *model.PeerAuthentication
	NamespacePeerAuthentication(namespace string) *model.PeerAuthentication
	HasPeerAuthentications() bool
}

// Build returns the Authorization resource called name ("<ns>/<name>"),
// nil when it does not exist.
func Build(src Source, rootNamespace, name string) *security.Authorization {
	ns, n, converted, ok := SplitName(name)
	switch {
	case !ok:
		return nil
	case ns == rootNamespace && n == StaticStrictName:
		if src.HasPeerAuthentications() {
			return StaticStrict(rootNamespace)
		}
		return nil
	case converted != "":
		pa := src.PeerAuthentication(ns, converted)
		if pa == nil || ns == rootNamespace {
			return nil
		}
		return ConvertPeerAuthentication(pa, src.NamespacePeerAuthentication(ns), src.MeshPeerAuthentication())
	}
	p := src.AuthorizationPolicy(ns, n)
	if p == nil {
		return nil
	}
	out, _ := Convert(p, rootNamespace)
	return out
}
