package workload

import (
	"net/netip"
	"strings"

	"google.golang.org/protobuf/types/known/wrapperspb"

	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/index"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/model"
)

// Options are the mesh settings written into resources.
type Options struct {
	ClusterID   string
	TrustDomain string
	// Network is the default network of workloads and service VIPs.
	Network       string
	RootNamespace string
}

// Builder builds Address resources from an index.
type Builder struct {
	ix   *index.Index
	opts Options
}

// New returns a builder reading ix.
func New(ix *index.Index, opts Options) *Builder { return &Builder{ix: ix, opts: opts} }

// Address builds the resource called name and its aliases; nil when no
// such resource exists.
func (b *Builder) Address(name string) (*workloadpb.Address, []string) {
	if w := b.ix.Workload(name); w != nil {
		wl := b.workload(w)
		return &workloadpb.Address{Type: &workloadpb.Address_Workload{Workload: wl}}, aliases(wl)
	}
	if s, e := b.ix.Endpoint(name); s != nil {
		wl := b.endpoint(name, s, e)
		return &workloadpb.Address{Type: &workloadpb.Address_Workload{Workload: wl}}, aliases(wl)
	}
	if defs := b.ix.Host(name); len(defs) > 0 {
		svc := b.service(name, defs[0])
		if svc == nil {
			return nil, nil
		}
		al := make([]string, 0, len(svc.Addresses))
		for _, a := range svc.Addresses {
			al = append(al, alias(a.Network, a.Address))
		}
		return &workloadpb.Address{Type: &workloadpb.Address_Service{Service: svc}}, al
	}
	return nil, nil
}

func alias(network string, ip []byte) string {
	a, _ := netip.AddrFromSlice(ip)
	return network + "/" + a.String()
}

func aliases(w *workloadpb.Workload) []string {
	if w.NetworkMode == workloadpb.NetworkMode_HOST_NETWORK || len(w.Addresses) == 0 {
		return nil
	}
	out := make([]string, 0, len(w.Addresses))
	for _, a := range w.Addresses {
		out = append(out, alias(w.Network, a))
	}
	return out
}

func (b *Builder) workload(w *model.Workload) *workloadpb.Workload {
	ns := w.Namespace.String()
	nsLabels := b.ix.Namespace(ns).NamespaceLabels()
	out := &workloadpb.Workload{
		Uid:            w.UID,
		Name:           w.Name,
		Namespace:      ns,
		Addresses:      addrBytes(w.Addresses),
		Hostname:       w.Hostname,
		Network:        b.network(w.Network, nsLabels),
		TrustDomain:    b.opts.TrustDomain,
		ServiceAccount: w.ServiceAccount.String(),
		Node:           w.Node.String(),
		WorkloadType:   workloadpb.WorkloadType_POD,
		WorkloadName:   w.WorkloadName.String(),
		ClusterId:      b.opts.ClusterID,
		Locality:       locality(w.Locality),
		Services:       b.services(w),
		Status:         workloadpb.WorkloadStatus_UNHEALTHY,
	}
	out.CanonicalName, out.CanonicalRevision = canonical(w.Labels, out.WorkloadName)
	if w.Has(model.FlagReady) {
		out.Status = workloadpb.WorkloadStatus_HEALTHY
	}
	if w.Has(model.FlagHostNetwork) {
		out.NetworkMode = workloadpb.NetworkMode_HOST_NETWORK
	}
	if w.Weight > 0 {
		out.Capacity = wrapperspb.UInt32(w.Weight)
	}
	b.tunnel(out, w.Labels, w.Kind == model.WorkloadPod && b.podEnrolled(w, nsLabels))
	out.Waypoint = b.waypoint(w.Labels, ns, nsLabels, false)
	out.AuthorizationPolicies = b.policies(w.Namespace, w.Labels)
	return out
}

// podEnrolled applies the dataplane-mode labels.
func (b *Builder) podEnrolled(w *model.Workload, nsLabels model.Labels) bool {
	if w.Has(model.FlagHostNetwork) || w.Has(model.FlagSidecar) {
		return false
	}
	switch w.Labels.Value(model.LabelDataplaneMode) {
	case model.ModeAmbient:
		return true
	case model.ModeNone:
		return false
	}
	return nsLabels.Value(model.LabelDataplaneMode) == model.ModeAmbient
}

// tunnel sets the tunnel protocol: enrolled pods, entries that enroll
// themselves, and native HBONE endpoints use HBONE.
func (b *Builder) tunnel(out *workloadpb.Workload, labels model.Labels, enrolled bool) {
	if labels.Value(model.LabelTunnel) == "http" {
		out.TunnelProtocol = workloadpb.TunnelProtocol_HBONE
		out.NativeTunnel = true
		return
	}
	if enrolled {
		out.TunnelProtocol = workloadpb.TunnelProtocol_HBONE
	}
}

func (b *Builder) network(own model.Atom, nsLabels model.Labels) string {
	if !own.IsZero() {
		return own.String()
	}
	if n := nsLabels.Value(model.LabelNetwork); n != "" {
		return n
	}
	return b.opts.Network
}

func (b *Builder) policies(ns model.Atom, labels model.Labels) []string {
	names := b.ix.SelectorPolicies(ns, labels)
	return append(names, b.ix.PeerAuthentications(ns, labels).Keys(b.opts.RootNamespace)...)
}

// services builds the services map of a Pod or WorkloadEntry.
func (b *Builder) services(w *model.Workload) map[string]*workloadpb.PortList {
	defs := b.ix.SelectingServices(w.Namespace, w.Labels)
	if len(defs) == 0 {
		return nil
	}
	out := make(map[string]*workloadpb.PortList, len(defs))
	for _, s := range defs {
		pl := &workloadpb.PortList{}
		for _, p := range s.Ports {
			if t, ok := targetPort(w, p); ok {
				pl.Ports = append(pl.Ports, &workloadpb.Port{ServicePort: p.Port, TargetPort: t})
			}
		}
		for _, h := range s.Hosts {
			k := index.HostName(s.Namespace.String(), h.Name)
			if _, dup := out[k]; !dup {
				out[k] = pl
			}
		}
	}
	return out
}

// targetPort resolves a service port for one workload.
func targetPort(w *model.Workload, p model.ServicePort) (uint32, bool) {
	if w.Kind == model.WorkloadEntry {
		// A WorkloadEntry maps ports by name: the target name first, then
		// the service port's name.
		if t, ok := w.Port(p.TargetName.String()); ok {
			return t, true
		}
		if t, ok := w.Port(p.Name.String()); ok {
			return t, true
		}
	}
	if !p.TargetName.IsZero() {
		if w.Kind == model.WorkloadPod {
			return w.Port(p.TargetName.String())
		}
		return 0, false
	}
	if p.TargetPort != 0 {
		return p.TargetPort, true
	}
	return p.Port, true
}

// endpoint builds a ServiceEntry endpoint's workload.
func (b *Builder) endpoint(uid string, s *model.Service, e *model.Endpoint) *workloadpb.Workload {
	ns := s.Namespace.String()
	nsLabels := b.ix.Namespace(ns).NamespaceLabels()
	out := &workloadpb.Workload{
		Uid:            uid,
		Name:           s.Name,
		Namespace:      ns,
		Hostname:       e.Hostname,
		Network:        b.network(e.Network, nsLabels),
		TrustDomain:    b.opts.TrustDomain,
		ServiceAccount: orDefault(e.ServiceAccount.String(), "default"),
		WorkloadType:   workloadpb.WorkloadType_POD,
		WorkloadName:   s.Name,
		ClusterId:      b.opts.ClusterID,
		Locality:       locality(e.Locality),
		Status:         workloadpb.WorkloadStatus_HEALTHY,
	}
	if e.Address.IsValid() {
		out.Addresses = [][]byte{e.Address.AsSlice()}
	}
	out.CanonicalName, out.CanonicalRevision = canonical(s.Labels, s.Name)
	if e.Weight > 0 {
		out.Capacity = wrapperspb.UInt32(e.Weight)
	}
	b.tunnel(out, e.Labels, e.Labels.Value(model.LabelDataplaneMode) == model.ModeAmbient)
	if e.OnlyHost == "" {
		// Implicit endpoints are the external host itself: no waypoint.
		out.Waypoint = b.waypoint(e.Labels, ns, nsLabels, false)
	}
	out.Services = make(map[string]*workloadpb.PortList, len(s.Hosts))
	pl := &workloadpb.PortList{}
	for _, p := range s.Ports {
		t, ok := e.Port(p.Name.String())
		if !ok {
			t = p.TargetPort
		}
		if t == 0 {
			t = p.Port
		}
		pl.Ports = append(pl.Ports, &workloadpb.Port{ServicePort: p.Port, TargetPort: t})
	}
	for _, h := range s.Hosts {
		if e.OnlyHost == "" || e.OnlyHost == h.Name {
			out.Services[index.HostName(ns, h.Name)] = pl
		}
	}
	out.AuthorizationPolicies = b.policies(s.Namespace, s.Labels)
	return out
}

// service builds the Service resource "<ns>/<host>" from its winning
// definition.
func (b *Builder) service(name string, s *model.Service) *workloadpb.Service {
	ns, hostname, _ := strings.Cut(name, "/")
	var host *model.Host
	for i := range s.Hosts {
		if s.Hosts[i].Name == hostname {
			host = &s.Hosts[i]
		}
	}
	if host == nil {
		return nil
	}
	out := &workloadpb.Service{
		Name:            s.Name,
		Namespace:       ns,
		Hostname:        hostname,
		SubjectAltNames: s.SubjectAltNames,
		IpFamilies:      workloadpb.IPFamilies(s.IPFamilies),
	}
	for _, v := range host.VIPs {
		out.Addresses = append(out.Addresses, &workloadpb.NetworkAddress{Network: b.opts.Network, Address: v.AsSlice()})
	}
	for _, p := range s.Ports {
		out.Ports = append(out.Ports, &workloadpb.Port{ServicePort: p.Port, TargetPort: p.TargetPort})
	}
	if lb := s.LoadBalancing; lb != nil {
		out.LoadBalancing = &workloadpb.LoadBalancing{Mode: workloadpb.LoadBalancing_Mode(lb.Mode)}
		for _, p := range lb.Preferences {
			out.LoadBalancing.RoutingPreference = append(out.LoadBalancing.RoutingPreference, workloadpb.LoadBalancing_Scope(p))
		}
		if lb.AllowUnhealthy {
			out.LoadBalancing.HealthPolicy = workloadpb.LoadBalancing_ALLOW_ALL
		}
	}
	out.Waypoint = b.waypoint(s.Labels, ns, b.ix.Namespace(ns).NamespaceLabels(), true)
	return out
}

// waypoint resolves the waypoint of an object (service: it is a Service
// or ServiceEntry host).
func (b *Builder) waypoint(labels model.Labels, ns string, nsLabels model.Labels, service bool) *workloadpb.GatewayAddress {
	if _, isGateway := labels.Get(model.LabelGatewayName); isGateway {
		return nil
	}
	ref, ok := model.UseWaypoint(labels, ns, nsLabels)
	if !ok {
		return nil
	}
	gw := b.ix.Gateway(ref)
	if gw == nil || !gw.Waypoint || !gw.For.Serves(service) {
		return nil
	}
	out := &workloadpb.GatewayAddress{HboneMtlsPort: gw.HBONEPort}
	if gw.Hostname != "" {
		out.Destination = &workloadpb.GatewayAddress_Hostname{Hostname: &workloadpb.NamespacedHostname{
			Namespace: gw.Namespace.String(), Hostname: gw.Hostname,
		}}
	} else {
		out.Destination = &workloadpb.GatewayAddress_Address{Address: &workloadpb.NetworkAddress{
			Network: b.opts.Network, Address: gw.IP.AsSlice(),
		}}
	}
	return out
}

// canonical applies Istio's telemetry label precedence.
func canonical(labels model.Labels, workloadName string) (name, revision string) {
	name = first(labels, model.LabelCanonicalName, model.LabelAppName, model.LabelApp)
	if name == "" {
		name = workloadName
	}
	revision = first(labels, model.LabelCanonicalRevision, model.LabelAppVersion, model.LabelVersion)
	if revision == "" {
		revision = "latest"
	}
	return name, revision
}

func first(labels model.Labels, keys ...string) string {
	for _, k := range keys {
		if v := labels.Value(k); v != "" {
			return v
		}
	}
	return ""
}

func locality(l model.Atom) *workloadpb.Locality {
	if l.IsZero() {
		return nil
	}
	parts := strings.SplitN(l.String(), "/", 3)
	loc := &workloadpb.Locality{Region: parts[0]}
	if len(parts) > 1 {
		loc.Zone = parts[1]
	}
	if len(parts) > 2 {
		loc.Subzone = parts[2]
	}
	return loc
}

func addrBytes(as []netip.Addr) [][]byte {
	if len(as) == 0 {
		return nil
	}
	out := make([][]byte, len(as))
	for i, a := range as {
		out[i] = a.AsSlice()
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
