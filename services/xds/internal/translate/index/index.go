package index

import (
	"cmp"
	"iter"
	"slices"
	"strings"

	"github.com/ambitmesh/ambit/services/xds/internal/translate/authz"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/model"
)

// Options are the mesh-wide settings the index needs to name things.
type Options struct {
	// ClusterID starts every workload uid.
	ClusterID string
	// RootNamespace holds mesh-wide policies.
	RootNamespace string
}

// Index is the incremental index. The zero value is not usable; call New.
type Index struct {
	opts Options
	root model.Atom

	namespaces map[string]*nsState
	workloads  map[string]*model.Workload // by uid
	services   map[model.Ref]*model.Service
	// hosts maps "<ns>/<host>" to its definitions, the winner first.
	hosts     map[string][]*model.Service
	endpoints map[string]endpointRef // ServiceEntry endpoint uid
	policies  map[nsName]*policy
	peerAuths map[nsName]*model.PeerAuthentication
	gateways  map[model.WaypointRef]*model.Gateway
	users     map[model.WaypointRef]*waypointUsers

	labels     workloadLabels
	serviceSel selectors[*model.Service]
	policySel  selectors[*policy]
	peerSel    selectors[*model.PeerAuthentication]
}

type nsName struct{ ns, name string }

// nsState is everything that lives in one namespace, for namespace-wide
// invalidation. It exists while anything is in the namespace.
type nsState struct {
	ns        *model.Namespace
	workloads set[*model.Workload]
	services  set[*model.Service]
	// peerAuths are the namespace's PeerAuthentications without selector
	// (in the root namespace: the mesh-wide ones).
	peerAuths set[*model.PeerAuthentication]
}

func (s *nsState) empty() bool {
	return s.ns == nil && len(s.workloads) == 0 && len(s.services) == 0 && len(s.peerAuths) == 0
}

// waypointUsers are the objects naming one waypoint in their own labels.
type waypointUsers struct {
	namespaces set[string]
	workloads  set[*model.Workload]
	services   set[*model.Service]
}

// policy is an AuthorizationPolicy with its ztunnel applicability.
type policy struct {
	p        *model.AuthorizationPolicy
	name     string
	enforced bool
	reason   string
}

// selects: workloads list the policy by name.
func (p *policy) selects() bool { return p != nil && p.enforced && p.p.Selector != nil }

type endpointRef struct {
	svc *model.Service
	i   int
}

// New returns an empty index.
func New(opts Options) *Index {
	return &Index{
		opts:       opts,
		root:       model.A(opts.RootNamespace),
		namespaces: map[string]*nsState{},
		workloads:  map[string]*model.Workload{},
		services:   map[model.Ref]*model.Service{},
		hosts:      map[string][]*model.Service{},
		endpoints:  map[string]endpointRef{},
		policies:   map[nsName]*policy{},
		peerAuths:  map[nsName]*model.PeerAuthentication{},
		gateways:   map[model.WaypointRef]*model.Gateway{},
		users:      map[model.WaypointRef]*waypointUsers{},
		labels:     workloadLabels{},
		serviceSel: selectors[*model.Service]{},
		policySel:  selectors[*policy]{},
		peerSel:    selectors[*model.PeerAuthentication]{},
	}
}

// Options returns the options the index was made with.
func (ix *Index) Options() Options { return ix.opts }

// Upsert adds or replaces the object and records what it may affect in
// ch (nil: record nothing). The index keeps obj; callers must not change
// it afterwards.
func (ix *Index) Upsert(obj model.Object, ch *Changes) {
	switch o := obj.(type) {
	case *model.Namespace:
		ix.setNamespace(o.Name, o, ch)
	case *model.Workload:
		ix.setWorkload(o.Ref(), o, ch)
	case *model.Service:
		ix.setService(o.Ref(), o, ch)
	case *model.AuthorizationPolicy:
		ix.setPolicy(nsName{o.Namespace.String(), o.Name}, o, ch)
	case *model.PeerAuthentication:
		ix.setPeerAuth(nsName{o.Namespace.String(), o.Name}, o, ch)
	case *model.Gateway:
		ix.setGateway(model.WaypointRef{Namespace: o.Namespace.String(), Name: o.Name}, o, ch)
	}
}

// Delete removes the object ref names, if present.
func (ix *Index) Delete(ref model.Ref, ch *Changes) {
	switch ref.Kind {
	case model.KindNamespace:
		ix.setNamespace(ref.Name, nil, ch)
	case model.KindPod, model.KindWorkloadEntry:
		ix.setWorkload(ref, nil, ch)
	case model.KindService, model.KindServiceEntry:
		ix.setService(ref, nil, ch)
	case model.KindAuthorizationPolicy:
		ix.setPolicy(nsName{ref.Namespace, ref.Name}, nil, ch)
	case model.KindPeerAuthentication:
		ix.setPeerAuth(nsName{ref.Namespace, ref.Name}, nil, ch)
	case model.KindGateway:
		ix.setGateway(model.WaypointRef{Namespace: ref.Namespace, Name: ref.Name}, nil, ch)
	}
}

// WorkloadUID is the resource name of a Pod or WorkloadEntry (DESIGN §2).
func (ix *Index) WorkloadUID(ref model.Ref) string {
	if ref.Kind == model.KindWorkloadEntry {
		return ix.opts.ClusterID + "/networking.istio.io/WorkloadEntry/" + ref.Namespace + "/" + ref.Name
	}
	return ix.opts.ClusterID + "//Pod/" + ref.Namespace + "/" + ref.Name
}

// EndpointUID is the resource name of a ServiceEntry's inline endpoint.
func (ix *Index) EndpointUID(s *model.Service, e *model.Endpoint) string {
	return ix.opts.ClusterID + "/networking.istio.io/ServiceEntry/" + s.Namespace.String() + "/" + s.Name + "/" + e.Key
}

// HostName is the resource name of a service host.
func HostName(ns, host string) string { return ns + "/" + host }

func (ix *Index) nsState(name string) *nsState {
	st := ix.namespaces[name]
	if st == nil {
		st = &nsState{workloads: set[*model.Workload]{}, services: set[*model.Service]{}, peerAuths: set[*model.PeerAuthentication]{}}
		ix.namespaces[name] = st
	}
	return st
}

func (ix *Index) prune(name string) {
	if st := ix.namespaces[name]; st != nil && st.empty() {
		delete(ix.namespaces, name)
	}
}

// --- namespaces ---

func (ix *Index) setNamespace(name string, n *model.Namespace, ch *Changes) {
	st := ix.nsState(name)
	old := st.ns
	st.ns = n
	oref, _ := model.ObjectWaypoint(old.NamespaceLabels(), name)
	nref, _ := model.ObjectWaypoint(n.NamespaceLabels(), name)
	if oref != nref {
		if u := ix.users[oref]; u != nil {
			delete(u.namespaces, name)
			ix.pruneUsers(oref)
		}
		if nref.Name != "" {
			ix.usersOf(nref).namespaces.add(name)
		}
	}
	if ch != nil && namespaceEffect(old) != namespaceEffect(n) {
		ix.touchNamespace(st, ch)
	}
	ix.prune(name)
}

// namespaceEffect is what of a namespace its contents' outputs read.
type nsEffect struct {
	ambient                    bool
	waypoint, wpNamespace, net string
}

func namespaceEffect(n *model.Namespace) nsEffect {
	ls := n.NamespaceLabels()
	return nsEffect{
		ambient:     n.Ambient(),
		waypoint:    ls.Value(model.LabelUseWaypoint),
		wpNamespace: ls.Value(model.LabelUseWaypointNamespace),
		net:         ls.Value(model.LabelNetwork),
	}
}

func (ix *Index) touchNamespace(st *nsState, ch *Changes) {
	for w := range st.workloads {
		ch.address(w.UID)
	}
	for s := range st.services {
		ix.touchService(s, ch)
	}
}

// touchService records a service's hosts and inline endpoints.
func (ix *Index) touchService(s *model.Service, ch *Changes) {
	ns := s.Namespace.String()
	for _, h := range s.Hosts {
		ch.address(HostName(ns, h.Name))
	}
	ix.touchEndpoints(s, ch)
}

func (ix *Index) touchEndpoints(s *model.Service, ch *Changes) {
	for i := range s.Endpoints {
		ch.address(ix.EndpointUID(s, &s.Endpoints[i]))
	}
}

// --- waypoint users ---

func (ix *Index) usersOf(ref model.WaypointRef) *waypointUsers {
	u := ix.users[ref]
	if u == nil {
		u = &waypointUsers{namespaces: set[string]{}, workloads: set[*model.Workload]{}, services: set[*model.Service]{}}
		ix.users[ref] = u
	}
	return u
}

func (ix *Index) pruneUsers(ref model.WaypointRef) {
	if u := ix.users[ref]; u != nil && len(u.namespaces)+len(u.workloads)+len(u.services) == 0 {
		delete(ix.users, ref)
	}
}

// serviceWaypoints are the waypoints a service or its endpoints name.
func serviceWaypoints(s *model.Service) []model.WaypointRef {
	ns := s.Namespace.String()
	var refs []model.WaypointRef
	if r, _ := model.ObjectWaypoint(s.Labels, ns); r.Name != "" {
		refs = append(refs, r)
	}
	for i := range s.Endpoints {
		if r, _ := model.ObjectWaypoint(s.Endpoints[i].Labels, ns); r.Name != "" && !slices.Contains(refs, r) {
			refs = append(refs, r)
		}
	}
	return refs
}

// --- workloads ---

func (ix *Index) setWorkload(ref model.Ref, w *model.Workload, ch *Changes) {
	uid := ix.WorkloadUID(ref)
	if old := ix.workloads[uid]; old != nil {
		ix.labels.remove(old)
		delete(ix.nsState(ref.Namespace).workloads, old)
		if r, _ := model.ObjectWaypoint(old.Labels, ref.Namespace); r.Name != "" {
			if u := ix.users[r]; u != nil {
				delete(u.workloads, old)
				ix.pruneUsers(r)
			}
		}
		delete(ix.workloads, uid)
	}
	if w != nil {
		w.UID = uid
		ix.workloads[uid] = w
		ix.labels.add(w)
		ix.nsState(ref.Namespace).workloads.add(w)
		if r, _ := model.ObjectWaypoint(w.Labels, ref.Namespace); r.Name != "" {
			ix.usersOf(r).workloads.add(w)
		}
	}
	ch.address(uid)
	ix.prune(ref.Namespace)
}

// --- services ---

func (ix *Index) setService(ref model.Ref, s *model.Service, ch *Changes) {
	old := ix.services[ref]
	if old != nil {
		ix.removeService(ref, old)
	}
	if s != nil {
		ix.addService(ref, s)
	}
	if ch == nil {
		return
	}
	if old != nil {
		ix.touchService(old, ch)
	}
	if s != nil {
		ix.touchService(s, ch)
	}
	if !sameWorkloadFacing(old, s) {
		ns := model.A(ref.Namespace)
		for _, v := range []*model.Service{old, s} {
			if v != nil {
				ix.labels.matching(ns, v.Selector, func(w *model.Workload) { ch.address(w.UID) })
			}
		}
	}
}

func (ix *Index) addService(ref model.Ref, s *model.Service) {
	ix.services[ref] = s
	ix.nsState(ref.Namespace).services.add(s)
	ix.serviceSel.add(s.Namespace, s.Selector, s)
	for _, h := range s.Hosts {
		k := HostName(ref.Namespace, h.Name)
		defs := ix.hosts[k]
		if slices.Contains(defs, s) {
			continue
		}
		defs = append(defs, s)
		slices.SortFunc(defs, serviceOrder)
		ix.hosts[k] = defs
	}
	for i := range s.Endpoints {
		ix.endpoints[ix.EndpointUID(s, &s.Endpoints[i])] = endpointRef{svc: s, i: i}
	}
	for _, r := range serviceWaypoints(s) {
		ix.usersOf(r).services.add(s)
	}
}

func (ix *Index) removeService(ref model.Ref, s *model.Service) {
	delete(ix.services, ref)
	delete(ix.nsState(ref.Namespace).services, s)
	ix.serviceSel.remove(s.Namespace, s.Selector, s)
	for _, h := range s.Hosts {
		k := HostName(ref.Namespace, h.Name)
		defs := slices.DeleteFunc(ix.hosts[k], func(d *model.Service) bool { return d == s })
		if len(defs) == 0 {
			delete(ix.hosts, k)
		} else {
			ix.hosts[k] = defs
		}
	}
	for i := range s.Endpoints {
		uid := ix.EndpointUID(s, &s.Endpoints[i])
		if ix.endpoints[uid].svc == s {
			delete(ix.endpoints, uid)
		}
	}
	for _, r := range serviceWaypoints(s) {
		if u := ix.users[r]; u != nil {
			delete(u.services, s)
			ix.pruneUsers(r)
		}
	}
	ix.prune(ref.Namespace)
}

// serviceOrder decides which definition of a host wins and the order in
// which a workload's services are merged: core Services before
// ServiceEntries, then the oldest, then by name.
func serviceOrder(a, b *model.Service) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Created, b.Created), strings.Compare(a.Name, b.Name))
}

// sameWorkloadFacing reports whether the parts of a service that selected
// workloads read (kind, selector, hosts, ports, order) are unchanged.
func sameWorkloadFacing(a, b *model.Service) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Kind == b.Kind && a.Created == b.Created && a.Selector.Equal(b.Selector) &&
		slices.Equal(a.Ports, b.Ports) &&
		slices.EqualFunc(a.Hosts, b.Hosts, func(x, y model.Host) bool { return x.Name == y.Name })
}

// --- authorization policies ---

func (ix *Index) setPolicy(key nsName, p *model.AuthorizationPolicy, ch *Changes) {
	old := ix.policies[key]
	var np *policy
	if p != nil {
		ok, reason := authz.Enforced(p)
		np = &policy{p: p, name: authz.Name(key.ns, key.name), enforced: ok, reason: reason}
	}
	if old.selects() {
		ix.policySel.remove(old.p.Namespace, old.p.Selector, old)
	}
	if np != nil {
		ix.policies[key] = np
		if np.selects() {
			ix.policySel.add(np.p.Namespace, np.p.Selector, np)
		}
	} else {
		delete(ix.policies, key)
	}
	ch.authorization(authz.Name(key.ns, key.name))
	if ch == nil {
		return
	}
	if old.selects() == np.selects() && (!np.selects() || old.p.Selector.Equal(np.p.Selector)) {
		return
	}
	for _, q := range []*policy{old, np} {
		if q.selects() {
			ix.touchSelected(key.ns, q.p.Selector, key.ns == ix.opts.RootNamespace, ch)
		}
	}
}

// touchSelected records the workloads (and ServiceEntry endpoints, by
// their ServiceEntry's labels) that sel selects in ns, or in every
// namespace.
func (ix *Index) touchSelected(ns string, sel model.Labels, everywhere bool, ch *Changes) {
	if !everywhere {
		if st := ix.namespaces[ns]; st != nil {
			ix.touchSelectedIn(ns, st, sel, ch)
		}
		return
	}
	for name, st := range ix.namespaces {
		ix.touchSelectedIn(name, st, sel, ch)
	}
}

func (ix *Index) touchSelectedIn(ns string, st *nsState, sel model.Labels, ch *Changes) {
	ix.labels.matching(model.A(ns), sel, func(w *model.Workload) { ch.address(w.UID) })
	for s := range st.services {
		if len(s.Endpoints) > 0 && sel.Matches(s.Labels) {
			ix.touchEndpoints(s, ch)
		}
	}
}

// --- peer authentications ---

func (ix *Index) setPeerAuth(key nsName, pa *model.PeerAuthentication, ch *Changes) {
	root := ix.opts.RootNamespace
	meshBefore, nsBefore := mode(ix.MeshPeerAuthentication()), mode(ix.NamespacePeerAuthentication(key.ns))
	anyBefore := len(ix.peerAuths) > 0
	old := ix.peerAuths[key]
	if old != nil {
		if old.Selector == nil {
			delete(ix.nsState(key.ns).peerAuths, old)
		} else if key.ns != root {
			ix.peerSel.remove(old.Namespace, old.Selector, old)
		}
		delete(ix.peerAuths, key)
	}
	if pa != nil {
		ix.peerAuths[key] = pa
		if pa.Selector == nil {
			ix.nsState(key.ns).peerAuths.add(pa)
		} else if key.ns != root {
			ix.peerSel.add(pa.Namespace, pa.Selector, pa)
		}
	}
	ix.prune(key.ns)
	if ch == nil {
		return
	}
	ch.authorization(authz.Name(key.ns, authz.ConvertedName(key.name)))
	if anyBefore != (len(ix.peerAuths) > 0) {
		ch.authorization(authz.Name(root, authz.StaticStrictName))
	}
	switch {
	case meshBefore != mode(ix.MeshPeerAuthentication()):
		// Every workload's effective mode may change.
		for uid := range ix.workloads {
			ch.address(uid)
		}
		for uid := range ix.endpoints {
			ch.address(uid)
		}
		for k, p := range ix.peerAuths {
			if p.Selector != nil {
				ch.authorization(authz.Name(k.ns, authz.ConvertedName(k.name)))
			}
		}
	case key.ns != root && nsBefore != mode(ix.NamespacePeerAuthentication(key.ns)):
		if st := ix.namespaces[key.ns]; st != nil {
			for w := range st.workloads {
				ch.address(w.UID)
			}
			for s := range st.services {
				ix.touchEndpoints(s, ch)
			}
		}
		for k, p := range ix.peerAuths {
			if k.ns == key.ns && p.Selector != nil {
				ch.authorization(authz.Name(k.ns, authz.ConvertedName(k.name)))
			}
		}
	}
	if key.ns != root {
		for _, q := range []*model.PeerAuthentication{old, pa} {
			if q != nil && q.Selector != nil {
				ix.touchSelected(key.ns, q.Selector, false, ch)
			}
		}
	}
}

func mode(p *model.PeerAuthentication) model.MTLSMode {
	if p == nil {
		return model.MTLSUnset
	}
	return p.Mode
}

// oldest is the policy Istio picks among several of one level.
func oldest(ps iter.Seq[*model.PeerAuthentication]) *model.PeerAuthentication {
	var best *model.PeerAuthentication
	for p := range ps {
		if best == nil || cmp.Or(cmp.Compare(p.Created, best.Created), strings.Compare(p.Name, best.Name)) < 0 {
			best = p
		}
	}
	return best
}

// --- gateways ---

func (ix *Index) setGateway(ref model.WaypointRef, g *model.Gateway, ch *Changes) {
	old := ix.gateways[ref]
	if g != nil {
		ix.gateways[ref] = g
	} else {
		delete(ix.gateways, ref)
	}
	if ch == nil || (old != nil && g != nil && *old == *g) || (old == nil && g == nil) {
		return
	}
	u := ix.users[ref]
	if u == nil {
		return
	}
	for name := range u.namespaces {
		if st := ix.namespaces[name]; st != nil {
			ix.touchNamespace(st, ch)
		}
	}
	for w := range u.workloads {
		ch.address(w.UID)
	}
	for s := range u.services {
		ix.touchService(s, ch)
	}
}
