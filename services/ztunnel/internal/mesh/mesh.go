// Package mesh is ztunnel's view of the mesh as xds describes it: the
// workloads, services and L4 policies of Istio's workload API, decoded
// into a compact form with the indexes the data path needs (workload by
// IP, service by VIP, endpoints of a service) and published as immutable
// snapshots, so a connection looks things up without locks while updates
// build the next snapshot aside.
package mesh

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/authz"
)

// Workload is one workload (pod or WorkloadEntry).
type Workload struct {
	UID            string
	Name           string
	Namespace      string
	ServiceAccount string
	TrustDomain    string
	Node           string
	ClusterID      string
	// App and Version are the canonical service and revision (metrics).
	App, Version string
	WorkloadName string
	Addrs        []netip.Addr
	// HBONE: the workload is in the mesh and is reached through its
	// node's ztunnel on 15008; otherwise plaintext.
	HBONE   bool
	Healthy bool
	// HostNetwork: the workload uses its node's network, so its address
	// is shared (with the node and other such pods) and does not identify
	// it: WorkloadByIP does not find it, as in Istio's ztunnel.
	HostNetwork bool
	Waypoint    *Gateway
	// Services maps a service key ("ns/hostname") to port mappings.
	Services map[string][]PortMap
	// Policies are the keys of its WORKLOAD_SELECTOR policies.
	Policies []string
}

// Identity is the workload's SPIFFE ID.
func (w *Workload) Identity() string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", w.TrustDomain, w.Namespace, w.ServiceAccount)
}

// PortMap maps a service port to the workload's target port.
type PortMap struct{ Service, Target uint16 }

// Gateway is a waypoint: an address or a service host name.
type Gateway struct {
	Addr      netip.Addr
	Service   string // "ns/hostname" when given by name
	HBONEPort uint16
}

// Service is one service.
type Service struct {
	Key       string // ns/hostname
	Name      string
	Namespace string
	Hostname  string
	VIPs      []netip.Addr
	Ports     []PortMap
	Waypoint  *Gateway
	// AllowUnhealthy: load-balance to every endpoint, not only healthy ones.
	AllowUnhealthy bool
}

// Endpoint is a workload serving a service port.
type Endpoint struct {
	Workload *Workload
	Port     uint16
}

// snapshot is one immutable state of the view.
type snapshot struct {
	workloads map[string]*Workload // by resource name (uid)
	byIP      map[netip.Addr]*Workload
	services  map[string]*Service // by resource name (ns/hostname)
	byVIP     map[netip.Addr]*Service
	endpoints map[string][]*Workload // service key → workloads listing it
	policies  map[string]*authz.Policy
	// The policies by how they select workloads, so a connection looks
	// at the ones that apply to it, not at every policy of the mesh:
	// GLOBAL ones, NAMESPACE ones by namespace, WORKLOAD_SELECTOR ones by
	// the key workloads list them under. Each list is sorted by key.
	global     []*authz.Policy
	byNS       map[string][]*authz.Policy
	bySelector map[string][]*authz.Policy
	// versions of every resource held, for initial_resource_versions.
	addrVersions, authzVersions map[string]string
}

// Store holds the current snapshot.
type Store struct {
	cur     atomic.Pointer[snapshot]
	mu      sync.Mutex // serializes writers
	changed chan struct{}
	cmu     sync.Mutex
}

// New returns an empty store.
func New() *Store {
	s := &Store{changed: make(chan struct{})}
	s.cur.Store(&snapshot{
		workloads: map[string]*Workload{}, byIP: map[netip.Addr]*Workload{},
		services: map[string]*Service{}, byVIP: map[netip.Addr]*Service{},
		endpoints: map[string][]*Workload{}, policies: map[string]*authz.Policy{},
		byNS: map[string][]*authz.Policy{}, bySelector: map[string][]*authz.Policy{},
		addrVersions: map[string]string{}, authzVersions: map[string]string{},
	})
	return s
}

// Changed is closed at the next update.
func (s *Store) Changed() <-chan struct{} {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.changed
}

func (s *Store) notify() {
	s.cmu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.cmu.Unlock()
}

// Resource is one named, versioned resource of an update.
type Resource[T any] struct {
	Name, Version string
	Value         T
}

// ApplyAddresses applies one xds response of Address resources. Every
// resource is decoded first; any error rejects the whole response (the
// NACK names the resource) and leaves the view unchanged.
func (s *Store) ApplyAddresses(upserts []Resource[*workloadpb.Address], removes []string) error {
	type decoded struct {
		name, version string
		w             *Workload
		svc           *Service
	}
	var ds []decoded
	var errs []error
	for _, r := range upserts {
		switch v := r.Value.GetType().(type) {
		case *workloadpb.Address_Workload:
			w, err := decodeWorkload(v.Workload)
			if err != nil {
				errs = append(errs, fmt.Errorf("address %q: %w", r.Name, err))
				continue
			}
			ds = append(ds, decoded{name: r.Name, version: r.Version, w: w})
		case *workloadpb.Address_Service:
			svc, err := decodeService(v.Service)
			if err != nil {
				errs = append(errs, fmt.Errorf("address %q: %w", r.Name, err))
				continue
			}
			ds = append(ds, decoded{name: r.Name, version: r.Version, svc: svc})
		default:
			errs = append(errs, fmt.Errorf("address %q: neither a workload nor a service", r.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	next := *old
	next.workloads = cloneMap(old.workloads)
	next.services = cloneMap(old.services)
	next.addrVersions = cloneMap(old.addrVersions)
	for _, name := range removes {
		delete(next.workloads, name)
		delete(next.services, name)
		delete(next.addrVersions, name)
	}
	for _, d := range ds {
		delete(next.workloads, d.name)
		delete(next.services, d.name)
		if d.w != nil {
			next.workloads[d.name] = d.w
		} else {
			next.services[d.name] = d.svc
		}
		next.addrVersions[d.name] = d.version
	}
	next.reindex()
	s.cur.Store(&next)
	s.notify()
	return nil
}

// ApplyAuthorizations applies one xds response of Authorization resources,
// all or nothing like ApplyAddresses.
func (s *Store) ApplyAuthorizations(upserts []Resource[*securitypb.Authorization], removes []string) error {
	compiled := make([]*authz.Policy, len(upserts))
	var errs []error
	for i, r := range upserts {
		p, err := authz.Compile(r.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("authorization %q: %w", r.Name, err))
			continue
		}
		compiled[i] = p
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	next := *old
	next.policies = cloneMap(old.policies)
	next.authzVersions = cloneMap(old.authzVersions)
	for _, name := range removes {
		delete(next.policies, name)
		delete(next.authzVersions, name)
	}
	for i, r := range upserts {
		next.policies[r.Name] = compiled[i]
		next.authzVersions[r.Name] = r.Version
	}
	next.indexPolicies()
	s.cur.Store(&next)
	s.notify()
	return nil
}

// Versions returns the version of every resource held of the type, for
// initial_resource_versions when reconnecting.
func (s *Store) Versions(addresses bool) map[string]string {
	cur := s.cur.Load()
	if addresses {
		return cloneMap(cur.addrVersions)
	}
	return cloneMap(cur.authzVersions)
}

func (n *snapshot) reindex() {
	n.byIP = make(map[netip.Addr]*Workload, len(n.workloads))
	n.endpoints = map[string][]*Workload{}
	for _, w := range n.workloads {
		for _, a := range w.Addrs {
			if cur, ok := n.byIP[a]; !w.HostNetwork && (!ok || preferByIP(w, cur)) {
				n.byIP[a] = w
			}
		}
		for key := range w.Services {
			n.endpoints[key] = append(n.endpoints[key], w)
		}
	}
	for _, ws := range n.endpoints {
		slices.SortFunc(ws, func(a, b *Workload) int {
			if a.UID < b.UID {
				return -1
			}
			if a.UID > b.UID {
				return 1
			}
			return 0
		})
	}
	n.byVIP = make(map[netip.Addr]*Service, len(n.services))
	for _, svc := range n.services {
		for _, v := range svc.VIPs {
			n.byVIP[v] = svc
		}
	}
}

// preferByIP decides which of two workloads claiming one address owns it
// (a recycled pod IP while xds catches up, a WorkloadEntry on a pod's IP):
// like Istio's ztunnel, a pod over other kinds, then one in the mesh;
// then the lower uid, so the answer does not depend on map order.
func preferByIP(a, b *Workload) bool {
	rank := func(w *Workload) int {
		r := 0
		if strings.Contains(w.UID, "//Pod/") {
			r += 2
		}
		if w.HBONE {
			r++
		}
		return r
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra > rb
	}
	return a.UID < b.UID
}

func (n *snapshot) indexPolicies() {
	n.global = nil
	n.byNS = map[string][]*authz.Policy{}
	n.bySelector = map[string][]*authz.Policy{}
	for _, p := range n.policies {
		switch p.Scope() {
		case authz.Global:
			n.global = append(n.global, p)
		case authz.Namespace:
			n.byNS[p.Namespace()] = append(n.byNS[p.Namespace()], p)
		default:
			n.bySelector[p.Key()] = append(n.bySelector[p.Key()], p)
		}
	}
	byKey := func(a, b *authz.Policy) int { return strings.Compare(a.Key(), b.Key()) }
	slices.SortFunc(n.global, byKey)
	for _, ps := range n.byNS {
		slices.SortFunc(ps, byKey)
	}
	for _, ps := range n.bySelector {
		slices.SortFunc(ps, byKey)
	}
}

// WorkloadByIP finds the workload owning ip.
func (s *Store) WorkloadByIP(ip netip.Addr) (*Workload, bool) {
	w, ok := s.cur.Load().byIP[ip.Unmap()]
	return w, ok
}

// WorkloadByUID finds a workload by its WDS uid.
func (s *Store) WorkloadByUID(uid string) (*Workload, bool) {
	w, ok := s.cur.Load().workloads[uid]
	return w, ok
}

// ServiceByVIP finds the service with virtual IP ip.
func (s *Store) ServiceByVIP(ip netip.Addr) (*Service, bool) {
	svc, ok := s.cur.Load().byVIP[ip.Unmap()]
	return svc, ok
}

// Service finds a service by key (ns/hostname).
func (s *Store) Service(key string) (*Service, bool) {
	svc, ok := s.cur.Load().services[key]
	return svc, ok
}

// Endpoints are the workloads serving port of svc that may take traffic
// (healthy ones, unless the service allows all), with their target port.
func (s *Store) Endpoints(svc *Service, port uint16) []Endpoint {
	var out []Endpoint
	for _, w := range s.cur.Load().endpoints[svc.Key] {
		if !w.Healthy && !svc.AllowUnhealthy {
			continue
		}
		for _, pm := range w.Services[svc.Key] {
			if pm.Service == port {
				t := pm.Target
				if t == 0 {
					t = port
				}
				out = append(out, Endpoint{Workload: w, Port: t})
			}
		}
	}
	return out
}

// Policies returns the compiled policies that govern w (Istio's selection:
// GLOBAL, its namespace's NAMESPACE policies, its listed selector ones).
//
// It costs the policies that apply, not the policies of the mesh: GLOBAL
// ones, then the namespace's, then the listed ones, each group by key.
func (s *Store) Policies(w *Workload) []*authz.Policy {
	cur := s.cur.Load()
	ns := cur.byNS[w.Namespace]
	n := len(cur.global) + len(ns)
	for _, k := range w.Policies {
		n += len(cur.bySelector[k])
	}
	if n == 0 {
		return nil
	}
	out := make([]*authz.Policy, 0, n)
	out = append(out, cur.global...)
	out = append(out, ns...)
	for i, k := range w.Policies {
		if !slices.Contains(w.Policies[:i], k) { // listed twice
			out = append(out, cur.bySelector[k]...)
		}
	}
	return out
}

// Counts is the size of the view.
type Counts struct{ Workloads, Services, Policies int }

// Counts returns the size of the view.
func (s *Store) Counts() Counts {
	cur := s.cur.Load()
	return Counts{len(cur.workloads), len(cur.services), len(cur.policies)}
}

// Dump is the view for /config_dump.
func (s *Store) Dump() map[string]any {
	cur := s.cur.Load()
	pols := map[string]string{}
	for k, p := range cur.policies {
		pols[k] = fmt.Sprintf("%s %s scope=%s", p.Action(), k, p.Scope())
	}
	return map[string]any{"workloads": cur.workloads, "services": cur.services, "policies": pols}
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func addrFromBytes(b []byte) (netip.Addr, error) {
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		return netip.Addr{}, fmt.Errorf("address of %d bytes", len(b))
	}
	return a.Unmap(), nil
}

func port16(field string, p uint32) (uint16, error) {
	if p > 65535 {
		return 0, fmt.Errorf("%s %d is above 65535", field, p)
	}
	return uint16(p), nil
}

func decodeGateway(g *workloadpb.GatewayAddress) (*Gateway, error) {
	if g == nil {
		return nil, nil
	}
	out := &Gateway{}
	p, err := port16("waypoint.hbone_mtls_port", g.GetHboneMtlsPort())
	if err != nil {
		return nil, err
	}
	out.HBONEPort = p
	if out.HBONEPort == 0 {
		out.HBONEPort = 15008
	}
	switch d := g.GetDestination().(type) {
	case *workloadpb.GatewayAddress_Address:
		a, err := addrFromBytes(d.Address.GetAddress())
		if err != nil {
			return nil, fmt.Errorf("waypoint.address: %w", err)
		}
		out.Addr = a
	case *workloadpb.GatewayAddress_Hostname:
		out.Service = d.Hostname.GetNamespace() + "/" + d.Hostname.GetHostname()
	default:
		return nil, errors.New("waypoint: no destination")
	}
	return out, nil
}

func decodeWorkload(w *workloadpb.Workload) (*Workload, error) {
	if w.GetUid() == "" {
		return nil, errors.New("workload.uid: required")
	}
	out := &Workload{
		UID: w.GetUid(), Name: w.GetName(), Namespace: w.GetNamespace(), ServiceAccount: w.GetServiceAccount(),
		TrustDomain: w.GetTrustDomain(), Node: w.GetNode(), ClusterID: w.GetClusterId(),
		App: w.GetCanonicalName(), Version: w.GetCanonicalRevision(), WorkloadName: w.GetWorkloadName(),
		HBONE: w.GetTunnelProtocol() == workloadpb.TunnelProtocol_HBONE, Healthy: w.GetStatus() == workloadpb.WorkloadStatus_HEALTHY,
		HostNetwork: w.GetNetworkMode() == workloadpb.NetworkMode_HOST_NETWORK,
		Policies:    slices.Clone(w.GetAuthorizationPolicies()),
	}
	if out.TrustDomain == "" {
		out.TrustDomain = "cluster.local"
	}
	if out.ServiceAccount == "" {
		out.ServiceAccount = "default"
	}
	for i, b := range w.GetAddresses() {
		a, err := addrFromBytes(b)
		if err != nil {
			return nil, fmt.Errorf("workload.addresses[%d]: %w", i, err)
		}
		out.Addrs = append(out.Addrs, a)
	}
	wp, err := decodeGateway(w.GetWaypoint())
	if err != nil {
		return nil, fmt.Errorf("workload.%w", err)
	}
	out.Waypoint = wp
	if len(w.GetServices()) > 0 {
		out.Services = make(map[string][]PortMap, len(w.GetServices()))
		for key, pl := range w.GetServices() {
			for i, p := range pl.GetPorts() {
				sp, err := port16(fmt.Sprintf("workload.services[%q].ports[%d].service_port", key, i), p.GetServicePort())
				if err != nil {
					return nil, err
				}
				tp, err := port16(fmt.Sprintf("workload.services[%q].ports[%d].target_port", key, i), p.GetTargetPort())
				if err != nil {
					return nil, err
				}
				out.Services[key] = append(out.Services[key], PortMap{Service: sp, Target: tp})
			}
		}
	}
	return out, nil
}

func decodeService(s *workloadpb.Service) (*Service, error) {
	if s.GetHostname() == "" {
		return nil, errors.New("service.hostname: required")
	}
	out := &Service{
		Key: s.GetNamespace() + "/" + s.GetHostname(), Name: s.GetName(), Namespace: s.GetNamespace(), Hostname: s.GetHostname(),
		AllowUnhealthy: s.GetLoadBalancing().GetHealthPolicy() == workloadpb.LoadBalancing_ALLOW_ALL,
	}
	for i, na := range s.GetAddresses() {
		a, err := addrFromBytes(na.GetAddress())
		if err != nil {
			return nil, fmt.Errorf("service.addresses[%d]: %w", i, err)
		}
		out.VIPs = append(out.VIPs, a)
	}
	for i, p := range s.GetPorts() {
		sp, err := port16(fmt.Sprintf("service.ports[%d].service_port", i), p.GetServicePort())
		if err != nil {
			return nil, err
		}
		tp, err := port16(fmt.Sprintf("service.ports[%d].target_port", i), p.GetTargetPort())
		if err != nil {
			return nil, err
		}
		out.Ports = append(out.Ports, PortMap{Service: sp, Target: tp})
	}
	wp, err := decodeGateway(s.GetWaypoint())
	if err != nil {
		return nil, fmt.Errorf("service.%w", err)
	}
	out.Waypoint = wp
	return out, nil
}
