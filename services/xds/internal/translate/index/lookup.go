package index

import (
	"iter"
	"maps"
	"slices"

	"github.com/ambitmesh/ambit/services/xds/internal/translate/authz"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/model"
)

// Workload returns the Pod or WorkloadEntry with this uid.
func (ix *Index) Workload(uid string) *model.Workload { return ix.workloads[uid] }

// Endpoint returns the ServiceEntry endpoint with this uid.
func (ix *Index) Endpoint(uid string) (*model.Service, *model.Endpoint) {
	r, ok := ix.endpoints[uid]
	if !ok {
		return nil, nil
	}
	return r.svc, &r.svc.Endpoints[r.i]
}

// Host returns the definitions of the service "<ns>/<host>", the one that
// wins first.
func (ix *Index) Host(name string) []*model.Service { return ix.hosts[name] }

// Namespace returns the namespace, nil if it has no Namespace object.
func (ix *Index) Namespace(name string) *model.Namespace {
	if st := ix.namespaces[name]; st != nil {
		return st.ns
	}
	return nil
}

// Gateway returns the Gateway ref names.
func (ix *Index) Gateway(ref model.WaypointRef) *model.Gateway { return ix.gateways[ref] }

// SelectingServices returns the Services and ServiceEntries in ns whose
// selector selects labels, in serviceOrder.
func (ix *Index) SelectingServices(ns model.Atom, labels model.Labels) []*model.Service {
	var out []*model.Service
	ix.serviceSel.candidates(ns, labels, func(s *model.Service) {
		if s.Selector.Matches(labels) {
			out = append(out, s)
		}
	})
	slices.SortFunc(out, serviceOrder)
	return out
}

// SelectorPolicies returns the names of the enforced selector
// AuthorizationPolicies, in ns or the root namespace, selecting labels;
// sorted.
func (ix *Index) SelectorPolicies(ns model.Atom, labels model.Labels) []string {
	var out []string
	add := func(p *policy) {
		if p.p.Selector.Matches(labels) {
			out = append(out, p.name)
		}
	}
	ix.policySel.candidates(ns, labels, add)
	if ns != ix.root {
		ix.policySel.candidates(ix.root, labels, add)
	}
	slices.Sort(out)
	return out
}

// PeerAuthentications returns the effective PeerAuthentications of a
// workload in ns with labels.
func (ix *Index) PeerAuthentications(ns model.Atom, labels model.Labels) authz.Effective {
	e := authz.Effective{Mesh: ix.MeshPeerAuthentication(), Namespace: ix.NamespacePeerAuthentication(ns.String())}
	if ns != ix.root {
		e.Workload = oldest(func(yield func(*model.PeerAuthentication) bool) {
			ix.peerSel.candidates(ns, labels, func(p *model.PeerAuthentication) {
				if p.Selector.Matches(labels) {
					yield(p)
				}
			})
		})
	}
	return e
}

// AuthorizationPolicy returns the policy (enforced or not).
func (ix *Index) AuthorizationPolicy(ns, name string) *model.AuthorizationPolicy {
	if p := ix.policies[nsName{ns, name}]; p != nil {
		return p.p
	}
	return nil
}

// PeerAuthentication returns the policy.
func (ix *Index) PeerAuthentication(ns, name string) *model.PeerAuthentication {
	return ix.peerAuths[nsName{ns, name}]
}

// MeshPeerAuthentication returns the oldest mesh-wide PeerAuthentication.
func (ix *Index) MeshPeerAuthentication() *model.PeerAuthentication {
	if st := ix.namespaces[ix.opts.RootNamespace]; st != nil {
		return oldest(maps.Keys(st.peerAuths))
	}
	return nil
}

// NamespacePeerAuthentication returns the oldest namespace-wide
// PeerAuthentication of ns (nil for the root namespace, whose are
// mesh-wide).
func (ix *Index) NamespacePeerAuthentication(ns string) *model.PeerAuthentication {
	if ns == ix.opts.RootNamespace {
		return nil
	}
	if st := ix.namespaces[ns]; st != nil {
		return oldest(maps.Keys(st.peerAuths))
	}
	return nil
}

// HasPeerAuthentications reports whether any PeerAuthentication exists.
func (ix *Index) HasPeerAuthentications() bool { return len(ix.peerAuths) > 0 }

// AddressNames yields every Address resource that may exist: workloads,
// ServiceEntry endpoints and service hosts. Builders decide.
func (ix *Index) AddressNames() iter.Seq[string] {
	return func(yield func(string) bool) {
		for uid := range ix.workloads {
			if !yield(uid) {
				return
			}
		}
		for uid := range ix.endpoints {
			if !yield(uid) {
				return
			}
		}
		for name := range ix.hosts {
			if !yield(name) {
				return
			}
		}
	}
}

// AuthorizationNames yields every Authorization resource that may exist.
func (ix *Index) AuthorizationNames() iter.Seq[string] {
	return func(yield func(string) bool) {
		for k := range ix.policies {
			if !yield(authz.Name(k.ns, k.name)) {
				return
			}
		}
		for k, p := range ix.peerAuths {
			if p.Selector != nil && k.ns != ix.opts.RootNamespace {
				if !yield(authz.Name(k.ns, authz.ConvertedName(k.name))) {
					return
				}
			}
		}
		if len(ix.peerAuths) > 0 {
			yield(authz.Name(ix.opts.RootNamespace, authz.StaticStrictName))
		}
	}
}

// Stats counts what the index holds.
type Stats struct {
	Namespaces, Workloads, Services, Hosts, Endpoints    int
	AuthorizationPolicies, PeerAuthentications, Gateways int
	// LabelPairs is the number of (namespace, key, value) postings.
	LabelPairs int
}

// Stats returns the index's counts.
func (ix *Index) Stats() Stats {
	return Stats{
		Namespaces: len(ix.namespaces), Workloads: len(ix.workloads), Services: len(ix.services),
		Hosts: len(ix.hosts), Endpoints: len(ix.endpoints), AuthorizationPolicies: len(ix.policies),
		PeerAuthentications: len(ix.peerAuths), Gateways: len(ix.gateways), LabelPairs: len(ix.labels),
	}
}
