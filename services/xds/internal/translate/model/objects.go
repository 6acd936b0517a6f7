package model

import (
	"net/netip"

	securityv1beta1 "istio.io/api/security/v1beta1"
)

// Object is one decoded stored object: *Namespace, *Workload, *Service,
// *AuthorizationPolicy, *PeerAuthentication or *Gateway.
type Object interface {
	// Ref names the stored object it came from.
	Ref() Ref
}

// Namespace keeps a namespace's labels: enrollment, waypoint and network
// defaults of everything in it.
type Namespace struct {
	Name   string
	Labels Labels
}

// Ref implements Object.
func (n *Namespace) Ref() Ref { return Ref{Kind: KindNamespace, Name: n.Name} }

// Ambient reports whether the namespace enrolls its pods.
func (n *Namespace) Ambient() bool {
	return n != nil && n.Labels.Value(LabelDataplaneMode) == ModeAmbient
}

// NamespaceLabels returns the labels of n, nil for a missing namespace.
func (n *Namespace) NamespaceLabels() Labels {
	if n == nil {
		return nil
	}
	return n.Labels
}

// WorkloadKind is where a Workload came from.
type WorkloadKind uint8

const (
	// WorkloadPod is a core Pod.
	WorkloadPod WorkloadKind = iota + 1
	// WorkloadEntry is a networking.istio.io WorkloadEntry (a VM or other
	// non-Kubernetes endpoint).
	WorkloadEntry
)

// WorkloadFlags are boolean facts about a workload.
type WorkloadFlags uint8

const (
	// FlagHostNetwork: the pod shares its node's network namespace.
	FlagHostNetwork WorkloadFlags = 1 << iota
	// FlagReady: the workload may receive new connections.
	FlagReady
	// FlagSidecar: the pod has an injected sidecar and is never captured.
	FlagSidecar
)

// Workload is a Pod or a WorkloadEntry: something that is itself selected
// by Services, ServiceEntries and policies.
type Workload struct {
	// UID is the resource name, set by the index when it takes the
	// workload (it depends on the cluster id).
	UID       string
	Kind      WorkloadKind
	Namespace Atom
	Name      string
	// Labels used for selection (a WorkloadEntry's spec.labels over its
	// metadata.labels).
	Labels Labels
	// Addresses in the order the object lists them; empty when Hostname
	// is set.
	Addresses []netip.Addr
	// Hostname is a WorkloadEntry's DNS address.
	Hostname       string
	Node           Atom
	ServiceAccount Atom
	// Network set on the object itself (WorkloadEntry spec.network or the
	// pod's network label); empty means "inherit".
	Network Atom
	// Locality "region/zone/subzone".
	Locality Atom
	// Ports are the named ports: a pod's named container ports, a
	// WorkloadEntry's ports map. Sorted by name.
	Ports []NamedPort
	// WorkloadName is the controller's name (the Deployment of a pod,
	// derived from its owner), for telemetry.
	WorkloadName Atom
	// Weight is a WorkloadEntry's relative capacity (0: unset).
	Weight uint32
	Flags  WorkloadFlags
}

// Ref implements Object.
func (w *Workload) Ref() Ref {
	k := KindPod
	if w.Kind == WorkloadEntry {
		k = KindWorkloadEntry
	}
	return Ref{Kind: k, Namespace: w.Namespace.String(), Name: w.Name}
}

// Has reports whether every flag of f is set.
func (w *Workload) Has(f WorkloadFlags) bool { return w.Flags&f == f }

// Port returns the named port.
func (w *Workload) Port(name string) (uint32, bool) { return findPort(w.Ports, name) }

// NamedPort is a port known by name.
type NamedPort struct {
	Name Atom
	Port uint32
}

func findPort(ps []NamedPort, name string) (uint32, bool) {
	if name == "" {
		return 0, false
	}
	for _, p := range ps {
		if p.Name.String() == name {
			return p.Port, true
		}
	}
	return 0, false
}

// ServiceKind is where a Service came from.
type ServiceKind uint8

const (
	// ServiceKube is a core Service.
	ServiceKube ServiceKind = iota + 1
	// ServiceEntry is a networking.istio.io ServiceEntry.
	ServiceEntry
)

// Service is a core Service or a ServiceEntry: one or more hosts with
// ports, selecting workloads and (ServiceEntry) listing inline endpoints.
type Service struct {
	Kind      ServiceKind
	Namespace Atom
	Name      string
	// Labels of the object (waypoint use; a ServiceEntry's labels also
	// select policies for its inline endpoints).
	Labels Labels
	// Selector picks workloads in the namespace; nil selects none.
	Selector Labels
	// Hosts: one for a core Service, one per spec.hosts entry for a
	// ServiceEntry.
	Hosts []Host
	Ports []ServicePort
	// LoadBalancing is nil when unset.
	LoadBalancing *LoadBalancing
	// IPFamilies: 0 automatic, 1 IPv4 only, 2 IPv6 only, 3 dual.
	IPFamilies      uint8
	SubjectAltNames []string
	// Endpoints are a ServiceEntry's inline (or implicit DNS) endpoints.
	Endpoints []Endpoint
	// Created orders conflicting definitions of one host (older first).
	Created int64
}

// Ref implements Object.
func (s *Service) Ref() Ref {
	k := KindService
	if s.Kind == ServiceEntry {
		k = KindServiceEntry
	}
	return Ref{Kind: k, Namespace: s.Namespace.String(), Name: s.Name}
}

// Host is one host name with its virtual IPs.
type Host struct {
	Name string
	VIPs []netip.Addr
}

// ServicePort is one port of a service.
type ServicePort struct {
	Name Atom
	Port uint32
	// TargetPort is the numeric target; 0 when TargetName is set (a named
	// container port, resolved per workload) or when unset (ServiceEntry).
	TargetPort uint32
	TargetName Atom
}

// LoadBalancing is a service's endpoint-selection policy.
type LoadBalancing struct {
	// Preferences are workload.LoadBalancing_Scope values.
	Preferences []uint8
	// Mode is a workload.LoadBalancing_Mode value.
	Mode uint8
	// AllowUnhealthy: include unhealthy endpoints (publishNotReadyAddresses).
	AllowUnhealthy bool
}

// Endpoint is an inline ServiceEntry endpoint: a workload that exists only
// inside its ServiceEntry.
type Endpoint struct {
	// Key is the address as written; the workload uid ends with it.
	Key string
	// Address, or Hostname for a DNS endpoint.
	Address        netip.Addr
	Hostname       string
	Labels         Labels
	Network        Atom
	ServiceAccount Atom
	Locality       Atom
	Ports          []NamedPort
	Weight         uint32
	// OnlyHost limits an implicit endpoint (a DNS ServiceEntry without
	// endpoints) to the host it was made from.
	OnlyHost string
}

// Port returns the endpoint's named port.
func (e *Endpoint) Port(name string) (uint32, bool) { return findPort(e.Ports, name) }

// AuthorizationPolicy is a security.istio.io AuthorizationPolicy. Its spec
// is kept as decoded: policies are few, and conversion needs every field.
type AuthorizationPolicy struct {
	Namespace Atom
	Name      string
	// Selector is nil for namespace-wide (or, in the root namespace,
	// mesh-wide) policies.
	Selector Labels
	DryRun   bool
	Spec     *securityv1beta1.AuthorizationPolicy
}

// Ref implements Object.
func (p *AuthorizationPolicy) Ref() Ref {
	return Ref{Kind: KindAuthorizationPolicy, Namespace: p.Namespace.String(), Name: p.Name}
}

// MTLSMode is a PeerAuthentication mode.
type MTLSMode uint8

// Values mirror securityv1beta1.PeerAuthentication_MutualTLS_Mode.
const (
	MTLSUnset      = MTLSMode(securityv1beta1.PeerAuthentication_MutualTLS_UNSET)
	MTLSDisable    = MTLSMode(securityv1beta1.PeerAuthentication_MutualTLS_DISABLE)
	MTLSPermissive = MTLSMode(securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE)
	MTLSStrict     = MTLSMode(securityv1beta1.PeerAuthentication_MutualTLS_STRICT)
)

func (m MTLSMode) String() string {
	return securityv1beta1.PeerAuthentication_MutualTLS_Mode(m).String()
}

// PeerAuthentication is a security.istio.io PeerAuthentication.
type PeerAuthentication struct {
	Namespace Atom
	Name      string
	// Selector is nil for namespace-wide (or, in the root namespace,
	// mesh-wide) policies.
	Selector Labels
	Mode     MTLSMode
	// Ports are the port-level modes, sorted by port; UNSET entries are
	// dropped.
	Ports []PortMTLS
	// Created orders policies of one level: the oldest wins (Istio).
	Created int64
}

// Ref implements Object.
func (p *PeerAuthentication) Ref() Ref {
	return Ref{Kind: KindPeerAuthentication, Namespace: p.Namespace.String(), Name: p.Name}
}

// PortMTLS is one port-level mode.
type PortMTLS struct {
	Port uint32
	Mode MTLSMode
}

// WaypointFor is what a waypoint serves.
type WaypointFor uint8

const (
	// ForService (the default) serves traffic addressed to services.
	ForService WaypointFor = iota
	// ForWorkload serves traffic addressed to workloads.
	ForWorkload
	// ForAll serves both.
	ForAll
	// ForNone serves neither.
	ForNone
)

func (f WaypointFor) String() string {
	switch f {
	case ForService:
		return "service"
	case ForWorkload:
		return "workload"
	case ForAll:
		return "all"
	}
	return "none"
}

// Serves reports whether a waypoint for f handles services (svc) or
// workloads (!svc).
func (f WaypointFor) Serves(svc bool) bool {
	if svc {
		return f == ForService || f == ForAll
	}
	return f == ForWorkload || f == ForAll
}

// Gateway is a gateway.networking.k8s.io Gateway, interesting only as a
// waypoint.
type Gateway struct {
	Namespace Atom
	Name      string
	// Waypoint: the class is istio-waypoint.
	Waypoint bool
	For      WaypointFor
	// Address clients tunnel to: a host name (preferred) or an IP.
	Hostname string
	IP       netip.Addr
	// HBONEPort is the port of the HBONE listener (15008 unless a listener
	// says otherwise).
	HBONEPort uint32
}

// Ref implements Object.
func (g *Gateway) Ref() Ref {
	return Ref{Kind: KindGateway, Namespace: g.Namespace.String(), Name: g.Name}
}
