package model

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
)

// Decoder decodes stored objects. DomainSuffix completes Service host
// names (<name>.<namespace>.svc.<suffix>).
type Decoder struct {
	DomainSuffix string
}

// lenient is how Istio specs are decoded: fields a newer config knows and
// we do not are skipped.
var lenient = protojson.UnmarshalOptions{DiscardUnknown: true}

// stored is the envelope of every stored object; spec and status are
// decoded per kind.
type stored struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     json.RawMessage   `json:"spec"`
	Status   json.RawMessage   `json:"status"`
}

// Decode decodes the stored JSON of the object ref names. The key, not the
// body, supplies namespace and name. It returns (nil, nil) for an object
// that produces nothing (a terminated pod, a pod without IPs, an
// ExternalName Service, a WorkloadEntry on a unix socket).
func (d Decoder) Decode(ref Ref, data []byte) (Object, error) {
	var (
		obj Object
		err error
	)
	switch ref.Kind {
	case KindNamespace:
		obj, err = decodeNamespace(ref, data)
	case KindPod:
		obj, err = decodePod(ref, data)
	case KindService:
		obj, err = d.decodeService(ref, data)
	case KindServiceEntry:
		obj, err = decodeServiceEntry(ref, data)
	case KindWorkloadEntry:
		obj, err = decodeWorkloadEntry(ref, data)
	case KindAuthorizationPolicy:
		obj, err = decodeAuthorizationPolicy(ref, data)
	case KindPeerAuthentication:
		obj, err = decodePeerAuthentication(ref, data)
	case KindGateway:
		obj, err = d.decodeGateway(ref, data)
	default:
		return nil, fmt.Errorf("decode %v: kind not translated", ref)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %v: %w", ref, err)
	}
	return obj, nil
}

func decodeEnvelope(data []byte, spec proto.Message) (*stored, error) {
	var s stored
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	if spec != nil && len(s.Spec) > 0 && string(s.Spec) != "null" {
		if err := lenient.Unmarshal(s.Spec, spec); err != nil {
			return nil, fmt.Errorf("spec: %w", err)
		}
	}
	return &s, nil
}

func decodeNamespace(ref Ref, data []byte) (Object, error) {
	var s stored
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	return &Namespace{Name: ref.Name, Labels: LabelsFrom(s.Metadata.Labels)}, nil
}

func decodePod(ref Ref, data []byte) (Object, error) {
	var p corev1.Pod
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, err
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil, nil
	}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	addrs := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip.IP); err == nil && !slices.Contains(addrs, a.Unmap()) {
			addrs = append(addrs, a.Unmap())
		}
	}
	if len(addrs) == 0 {
		return nil, nil
	}
	labels := LabelsFrom(p.Labels)
	w := &Workload{
		Kind:           WorkloadPod,
		Namespace:      A(ref.Namespace),
		Name:           ref.Name,
		Labels:         labels,
		Addresses:      addrs,
		Node:           A(p.Spec.NodeName),
		ServiceAccount: A(orDefault(p.Spec.ServiceAccountName, "default")),
		Network:        A(labels.Value(LabelNetwork)),
		Locality:       A(strings.ReplaceAll(labels.Value(LabelLocality), ".", "/")),
		WorkloadName:   A(podWorkloadName(&p, ref.Name)),
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != "" && cp.ContainerPort > 0 {
				w.Ports = append(w.Ports, NamedPort{Name: A(cp.Name), Port: uint32(cp.ContainerPort)})
			}
		}
	}
	slices.SortStableFunc(w.Ports, func(a, b NamedPort) int { return strings.Compare(a.Name.String(), b.Name.String()) })
	if p.Spec.HostNetwork {
		w.Flags |= FlagHostNetwork
	}
	if podReady(&p) {
		w.Flags |= FlagReady
	}
	if p.Annotations[AnnotationSidecarStatus] != "" {
		w.Flags |= FlagSidecar
	}
	return w, nil
}

// podReady: the Ready condition when the pod reports one, else "running";
// never while the pod is being deleted. (Pods written by the local runtime
// may carry a phase but no conditions.)
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return p.Status.Phase == corev1.PodRunning
}

// cronJobSuffix is the "-<scheduled minute>" a CronJob appends to its
// Jobs' names.
var cronJobSuffix = regexp.MustCompile(`^(.+)-\d{8,10}$`)

// podWorkloadName is the name of the controller behind a pod, for
// telemetry: a ReplicaSet's Deployment (the RS name less its
// pod-template-hash), a Job's CronJob, any other controller's own name, or
// the pod's name when it has none.
func podWorkloadName(p *corev1.Pod, name string) string {
	var owner *metav1.OwnerReference
	for i := range p.OwnerReferences {
		if o := &p.OwnerReferences[i]; owner == nil || (o.Controller != nil && *o.Controller) {
			owner = o
		}
	}
	if owner == nil {
		return name
	}
	switch owner.Kind {
	case "ReplicaSet":
		if h := p.Labels["pod-template-hash"]; h != "" {
			if n, ok := strings.CutSuffix(owner.Name, "-"+h); ok {
				return n
			}
		}
	case "Job":
		if m := cronJobSuffix.FindStringSubmatch(owner.Name); m != nil {
			return m[1]
		}
	}
	return owner.Name
}

func (d Decoder) decodeService(ref Ref, data []byte) (Object, error) {
	var svc corev1.Service
	if err := json.Unmarshal(data, &svc); err != nil {
		return nil, err
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, nil
	}
	host := Host{Name: ref.Name + "." + ref.Namespace + ".svc." + d.DomainSuffix}
	cips := svc.Spec.ClusterIPs
	if len(cips) == 0 && svc.Spec.ClusterIP != "" {
		cips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range cips {
		host.VIPs = appendIP(host.VIPs, ip)
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		host.VIPs = appendIP(host.VIPs, ing.IP)
	}
	s := &Service{
		Kind:      ServiceKube,
		Namespace: A(ref.Namespace),
		Name:      ref.Name,
		Labels:    LabelsFrom(svc.Labels),
		Selector:  LabelsFrom(svc.Spec.Selector),
		Hosts:     []Host{host},
		Created:   created(svc.ObjectMeta),
	}
	for _, p := range svc.Spec.Ports {
		// ztunnel carries TCP only.
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		sp := ServicePort{Name: A(p.Name), Port: uint32(p.Port)}
		switch {
		case p.TargetPort.Type == intstr.String && p.TargetPort.StrVal != "":
			sp.TargetName = A(p.TargetPort.StrVal)
		case p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal > 0:
			sp.TargetPort = uint32(p.TargetPort.IntVal)
		default:
			sp.TargetPort = sp.Port
		}
		s.Ports = append(s.Ports, sp)
	}
	switch fams := svc.Spec.IPFamilies; {
	case len(fams) >= 2:
		s.IPFamilies = uint8(workloadpb.IPFamilies_DUAL)
	case len(fams) == 1 && fams[0] == corev1.IPv4Protocol:
		s.IPFamilies = uint8(workloadpb.IPFamilies_IPV4_ONLY)
	case len(fams) == 1 && fams[0] == corev1.IPv6Protocol:
		s.IPFamilies = uint8(workloadpb.IPFamilies_IPV6_ONLY)
	}
	td := svc.Annotations[AnnotationTrafficDistribution]
	if svc.Spec.TrafficDistribution != nil {
		td = *svc.Spec.TrafficDistribution
	}
	local := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	s.LoadBalancing = loadBalancing(local, td, svc.Spec.PublishNotReadyAddresses)
	return s, nil
}

// loadBalancing maps Kubernetes traffic settings: internalTrafficPolicy
// Local keeps traffic on the node (STRICT NODE); trafficDistribution
// PreferSameZone (PreferClose) and PreferSameNode fail over from the
// closest locality outwards; publishNotReadyAddresses admits unhealthy
// endpoints.
func loadBalancing(localOnly bool, distribution string, allowUnhealthy bool) *LoadBalancing {
	var lb LoadBalancing
	scope := func(ss ...workloadpb.LoadBalancing_Scope) []uint8 {
		out := make([]uint8, len(ss))
		for i, s := range ss {
			out[i] = uint8(s)
		}
		return out
	}
	switch {
	case localOnly:
		lb.Mode = uint8(workloadpb.LoadBalancing_STRICT)
		lb.Preferences = scope(workloadpb.LoadBalancing_NODE)
	case distribution == corev1.ServiceTrafficDistributionPreferClose || distribution == corev1.ServiceTrafficDistributionPreferSameZone:
		lb.Mode = uint8(workloadpb.LoadBalancing_FAILOVER)
		lb.Preferences = scope(workloadpb.LoadBalancing_NETWORK, workloadpb.LoadBalancing_REGION,
			workloadpb.LoadBalancing_ZONE, workloadpb.LoadBalancing_SUBZONE)
	case distribution == corev1.ServiceTrafficDistributionPreferSameNode:
		lb.Mode = uint8(workloadpb.LoadBalancing_FAILOVER)
		lb.Preferences = scope(workloadpb.LoadBalancing_NETWORK, workloadpb.LoadBalancing_REGION,
			workloadpb.LoadBalancing_ZONE, workloadpb.LoadBalancing_SUBZONE, workloadpb.LoadBalancing_NODE)
	}
	lb.AllowUnhealthy = allowUnhealthy
	if lb.Mode == 0 && !lb.AllowUnhealthy {
		return nil
	}
	return &lb
}

func decodeServiceEntry(ref Ref, data []byte) (Object, error) {
	var spec networkingv1alpha3.ServiceEntry
	env, err := decodeEnvelope(data, &spec)
	if err != nil {
		return nil, err
	}
	var status struct {
		Addresses []struct {
			Value string `json:"value"`
			Host  string `json:"host"`
		} `json:"addresses"`
	}
	if len(env.Status) > 0 {
		if err := json.Unmarshal(env.Status, &status); err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
	}
	s := &Service{
		Kind:            ServiceEntry,
		Namespace:       A(ref.Namespace),
		Name:            ref.Name,
		Labels:          LabelsFrom(env.Metadata.Labels),
		Selector:        LabelsFrom(spec.GetWorkloadSelector().GetLabels()),
		SubjectAltNames: spec.GetSubjectAltNames(),
		Created:         created(env.Metadata),
		LoadBalancing:   loadBalancing(false, env.Metadata.Annotations[AnnotationTrafficDistribution], false),
	}
	var specVIPs []netip.Addr
	for _, a := range spec.GetAddresses() {
		specVIPs = appendIP(specVIPs, a)
	}
	for _, h := range spec.GetHosts() {
		host := Host{Name: h, VIPs: specVIPs}
		if len(specVIPs) == 0 {
			// Auto-allocated by config, one set per host (Istio's status layout).
			for _, a := range status.Addresses {
				if a.Host == "" || a.Host == h {
					host.VIPs = appendIP(host.VIPs, a.Value)
				}
			}
		}
		s.Hosts = append(s.Hosts, host)
	}
	for _, p := range spec.GetPorts() {
		s.Ports = append(s.Ports, ServicePort{Name: A(p.GetName()), Port: p.GetNumber(), TargetPort: p.GetTargetPort()})
	}
	seen := map[string]bool{}
	for _, ep := range spec.GetEndpoints() {
		e, ok := endpointFrom(ep.GetAddress(), ep.GetLabels(), ep.GetNetwork(), ep.GetServiceAccount(), ep.GetLocality(), ep.GetPorts(), ep.GetWeight())
		if !ok || seen[e.Key] {
			continue
		}
		seen[e.Key] = true
		s.Endpoints = append(s.Endpoints, e)
	}
	dns := spec.GetResolution() == networkingv1alpha3.ServiceEntry_DNS || spec.GetResolution() == networkingv1alpha3.ServiceEntry_DNS_ROUND_ROBIN
	if len(spec.GetEndpoints()) == 0 && dns && spec.GetWorkloadSelector() == nil {
		// A DNS ServiceEntry without endpoints resolves its own hosts.
		for _, h := range s.Hosts {
			if !seen[h.Name] {
				seen[h.Name] = true
				s.Endpoints = append(s.Endpoints, Endpoint{Key: h.Name, Hostname: h.Name, OnlyHost: h.Name})
			}
		}
	}
	return s, nil
}

// endpointFrom converts a WorkloadEntry-shaped endpoint; unix sockets have
// no place in the workload API.
func endpointFrom(address string, labels map[string]string, network, sa, locality string, ports map[string]uint32, weight uint32) (Endpoint, bool) {
	if address == "" || strings.HasPrefix(address, "unix://") {
		return Endpoint{}, false
	}
	e := Endpoint{
		Key:            address,
		Labels:         LabelsFrom(labels),
		Network:        A(network),
		ServiceAccount: A(sa),
		Locality:       A(locality),
		Ports:          namedPorts(ports),
		Weight:         weight,
	}
	if a, err := netip.ParseAddr(address); err == nil {
		e.Address = a.Unmap()
	} else {
		e.Hostname = address
	}
	return e, true
}

func namedPorts(m map[string]uint32) []NamedPort {
	if len(m) == 0 {
		return nil
	}
	ps := make([]NamedPort, 0, len(m))
	for n, p := range m {
		ps = append(ps, NamedPort{Name: A(n), Port: p})
	}
	slices.SortFunc(ps, func(a, b NamedPort) int { return strings.Compare(a.Name.String(), b.Name.String()) })
	return ps
}

func decodeWorkloadEntry(ref Ref, data []byte) (Object, error) {
	var spec networkingv1alpha3.WorkloadEntry
	env, err := decodeEnvelope(data, &spec)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{}
	for k, v := range env.Metadata.Labels {
		labels[k] = v
	}
	for k, v := range spec.GetLabels() {
		labels[k] = v
	}
	e, ok := endpointFrom(spec.GetAddress(), labels, spec.GetNetwork(), spec.GetServiceAccount(), spec.GetLocality(), spec.GetPorts(), spec.GetWeight())
	if !ok {
		return nil, nil
	}
	w := &Workload{
		Kind:           WorkloadEntry,
		Namespace:      A(ref.Namespace),
		Name:           ref.Name,
		Labels:         e.Labels,
		Hostname:       e.Hostname,
		ServiceAccount: A(orDefault(spec.GetServiceAccount(), "default")),
		Network:        e.Network,
		Locality:       e.Locality,
		Ports:          e.Ports,
		WorkloadName:   A(ref.Name),
		Weight:         e.Weight,
		Flags:          FlagReady,
	}
	if e.Address.IsValid() {
		w.Addresses = []netip.Addr{e.Address}
	}
	// With health checks, the WorkloadEntry's Healthy condition decides.
	var status struct {
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
	}
	if len(env.Status) > 0 && json.Unmarshal(env.Status, &status) == nil {
		for _, c := range status.Conditions {
			if c.Type == "Healthy" && c.Status == "False" {
				w.Flags &^= FlagReady
			}
		}
	}
	return w, nil
}

func decodeAuthorizationPolicy(ref Ref, data []byte) (Object, error) {
	spec := new(securityv1beta1.AuthorizationPolicy)
	env, err := decodeEnvelope(data, spec)
	if err != nil {
		return nil, err
	}
	dry, _ := strconv.ParseBool(env.Metadata.Annotations[AnnotationDryRun])
	return &AuthorizationPolicy{
		Namespace: A(ref.Namespace),
		Name:      ref.Name,
		Selector:  LabelsFrom(spec.GetSelector().GetMatchLabels()),
		DryRun:    dry,
		Spec:      spec,
	}, nil
}

func decodePeerAuthentication(ref Ref, data []byte) (Object, error) {
	var spec securityv1beta1.PeerAuthentication
	env, err := decodeEnvelope(data, &spec)
	if err != nil {
		return nil, err
	}
	pa := &PeerAuthentication{
		Namespace: A(ref.Namespace),
		Name:      ref.Name,
		Selector:  LabelsFrom(spec.GetSelector().GetMatchLabels()),
		Mode:      MTLSMode(spec.GetMtls().GetMode()),
		Created:   created(env.Metadata),
	}
	for port, m := range spec.GetPortLevelMtls() {
		if mode := MTLSMode(m.GetMode()); mode != MTLSUnset && port > 0 && port <= 65535 {
			pa.Ports = append(pa.Ports, PortMTLS{Port: port, Mode: mode})
		}
	}
	slices.SortFunc(pa.Ports, func(a, b PortMTLS) int { return int(a.Port) - int(b.Port) })
	return pa, nil
}

// defaultHBONEPort is where waypoints and ztunnels accept HBONE.
const defaultHBONEPort = 15008

func (d Decoder) decodeGateway(ref Ref, data []byte) (Object, error) {
	var gw gatewayv1.Gateway
	if err := json.Unmarshal(data, &gw); err != nil {
		return nil, err
	}
	g := &Gateway{
		Namespace: A(ref.Namespace),
		Name:      ref.Name,
		Waypoint:  string(gw.Spec.GatewayClassName) == WaypointClass,
		HBONEPort: defaultHBONEPort,
	}
	switch gw.Labels[LabelWaypointFor] {
	case "workload":
		g.For = ForWorkload
	case "all":
		g.For = ForAll
	case "none":
		g.For = ForNone
	}
	for _, l := range gw.Spec.Listeners {
		if l.Protocol == "HBONE" && l.Port > 0 {
			g.HBONEPort = uint32(l.Port)
			break
		}
	}
	// Prefer a host name: it stays valid when the VIP changes (as Istio).
	for _, a := range gw.Status.Addresses {
		if a.Type != nil && *a.Type == gatewayv1.HostnameAddressType && a.Value != "" {
			g.Hostname = a.Value
			break
		}
	}
	if g.Hostname == "" {
		for _, a := range gw.Status.Addresses {
			if a.Type == nil || *a.Type == gatewayv1.IPAddressType {
				if ip, err := netip.ParseAddr(a.Value); err == nil {
					g.IP = ip.Unmap()
					break
				}
			}
		}
	}
	if g.Hostname == "" && !g.IP.IsValid() {
		// No status yet: the Service the gateway controller creates for
		// the Gateway has the Gateway's name.
		g.Hostname = ref.Name + "." + ref.Namespace + ".svc." + d.DomainSuffix
	}
	return g, nil
}

// appendIP adds an IP (or a single-address CIDR) once; other text is
// skipped.
func appendIP(ips []netip.Addr, s string) []netip.Addr {
	if s == "" || s == corev1.ClusterIPNone {
		return ips
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		p, perr := netip.ParsePrefix(s)
		if perr != nil || p.Bits() != p.Addr().BitLen() {
			return ips
		}
		a = p.Addr()
	}
	a = a.Unmap()
	if slices.Contains(ips, a) {
		return ips
	}
	return append(ips, a)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// created is the creation time in Unix nanoseconds, 0 when unset.
func created(m metav1.ObjectMeta) int64 {
	if m.CreationTimestamp.IsZero() {
		return 0
	}
	return m.CreationTimestamp.UnixNano()
}
