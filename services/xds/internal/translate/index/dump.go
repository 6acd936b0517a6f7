package index

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/ambitmesh/ambit/services/xds/internal/translate/model"
)

// Dump is a readable, deterministic picture of the index (the stage-1
// golden files, and debugging). Field order and sorting are fixed.
type Dump struct {
	Namespaces            []NamespaceDump     `json:"namespaces,omitempty"`
	Workloads             []WorkloadDump      `json:"workloads,omitempty"`
	Services              []ServiceDump       `json:"services,omitempty"`
	Hosts                 map[string][]string `json:"hosts,omitempty"`
	AuthorizationPolicies []PolicyDump        `json:"authorizationPolicies,omitempty"`
	PeerAuthentications   []PeerAuthDump      `json:"peerAuthentications,omitempty"`
	Gateways              []GatewayDump       `json:"gateways,omitempty"`
	WaypointUsers         []WaypointUsersDump `json:"waypointUsers,omitempty"`
	// MeshPeerAuthentication is the effective mesh-wide policy.
	MeshPeerAuthentication string `json:"meshPeerAuthentication,omitempty"`
	Stats                  Stats  `json:"stats"`
}

// NamespaceDump is one namespace.
type NamespaceDump struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Contents counts what the index keeps for the namespace.
	Workloads           int    `json:"workloads,omitempty"`
	Services            int    `json:"services,omitempty"`
	EffectivePeerAuthNS string `json:"namespacePeerAuthentication,omitempty"`
}

// WorkloadDump is one Pod or WorkloadEntry.
type WorkloadDump struct {
	UID            string            `json:"uid"`
	Labels         map[string]string `json:"labels,omitempty"`
	Addresses      []string          `json:"addresses,omitempty"`
	Hostname       string            `json:"hostname,omitempty"`
	Node           string            `json:"node,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Network        string            `json:"network,omitempty"`
	Locality       string            `json:"locality,omitempty"`
	Ports          map[string]uint32 `json:"ports,omitempty"`
	WorkloadName   string            `json:"workloadName,omitempty"`
	Weight         uint32            `json:"weight,omitempty"`
	Flags          []string          `json:"flags,omitempty"`
}

// ServiceDump is one Service or ServiceEntry.
type ServiceDump struct {
	Ref             string              `json:"ref"`
	Labels          map[string]string   `json:"labels,omitempty"`
	Selector        map[string]string   `json:"selector,omitempty"`
	Hosts           map[string][]string `json:"hosts"`
	Ports           []string            `json:"ports,omitempty"`
	LoadBalancing   string              `json:"loadBalancing,omitempty"`
	IPFamilies      uint8               `json:"ipFamilies,omitempty"`
	SubjectAltNames []string            `json:"subjectAltNames,omitempty"`
	Endpoints       []string            `json:"endpoints,omitempty"`
	Created         int64               `json:"created,omitempty"`
}

// PolicyDump is one AuthorizationPolicy.
type PolicyDump struct {
	Name     string            `json:"name"`
	Selector map[string]string `json:"selector,omitempty"`
	Enforced bool              `json:"enforced"`
	Reason   string            `json:"reason,omitempty"`
}

// PeerAuthDump is one PeerAuthentication.
type PeerAuthDump struct {
	Name     string            `json:"name"`
	Selector map[string]string `json:"selector,omitempty"`
	Mode     string            `json:"mode"`
	Ports    map[uint32]string `json:"ports,omitempty"`
	Created  int64             `json:"created,omitempty"`
}

// GatewayDump is one Gateway.
type GatewayDump struct {
	Name      string `json:"name"`
	Waypoint  bool   `json:"waypoint"`
	For       string `json:"for"`
	Address   string `json:"address"`
	HBONEPort uint32 `json:"hbonePort"`
}

// WaypointUsersDump lists who names a waypoint in their own labels.
type WaypointUsersDump struct {
	Waypoint   string   `json:"waypoint"`
	Namespaces []string `json:"namespaces,omitempty"`
	Workloads  []string `json:"workloads,omitempty"`
	Services   []string `json:"services,omitempty"`
}

// Dump returns the index as a Dump.
func (ix *Index) Dump() Dump {
	d := Dump{Stats: ix.Stats(), Hosts: map[string][]string{}}
	if p := ix.MeshPeerAuthentication(); p != nil {
		d.MeshPeerAuthentication = p.Name + " (" + p.Mode.String() + ")"
	}
	for _, name := range slices.Sorted(maps.Keys(ix.namespaces)) {
		st := ix.namespaces[name]
		nd := NamespaceDump{Name: name, Workloads: len(st.workloads), Services: len(st.services)}
		if st.ns != nil {
			nd.Labels = st.ns.Labels.Map()
		}
		if p := oldest(maps.Keys(st.peerAuths)); p != nil {
			nd.EffectivePeerAuthNS = p.Name + " (" + p.Mode.String() + ")"
		}
		d.Namespaces = append(d.Namespaces, nd)
	}
	for _, uid := range slices.Sorted(maps.Keys(ix.workloads)) {
		d.Workloads = append(d.Workloads, dumpWorkload(ix.workloads[uid]))
	}
	svcs := slices.Collect(maps.Values(ix.services))
	slices.SortFunc(svcs, func(a, b *model.Service) int { return strings.Compare(a.Ref().String(), b.Ref().String()) })
	for _, s := range svcs {
		d.Services = append(d.Services, ix.dumpService(s))
	}
	for name, defs := range ix.hosts {
		for _, s := range defs {
			d.Hosts[name] = append(d.Hosts[name], s.Ref().String())
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(ix.policies), nsNameOrder) {
		p := ix.policies[k]
		d.AuthorizationPolicies = append(d.AuthorizationPolicies, PolicyDump{
			Name: p.name, Selector: p.p.Selector.Map(), Enforced: p.enforced, Reason: p.reason,
		})
	}
	for _, k := range slices.SortedFunc(maps.Keys(ix.peerAuths), nsNameOrder) {
		p := ix.peerAuths[k]
		pd := PeerAuthDump{Name: k.ns + "/" + k.name, Selector: p.Selector.Map(), Mode: p.Mode.String(), Created: p.Created}
		for _, pm := range p.Ports {
			if pd.Ports == nil {
				pd.Ports = map[uint32]string{}
			}
			pd.Ports[pm.Port] = pm.Mode.String()
		}
		d.PeerAuthentications = append(d.PeerAuthentications, pd)
	}
	for _, k := range slices.SortedFunc(maps.Keys(ix.gateways), refOrder) {
		g := ix.gateways[k]
		addr := g.Hostname
		if addr == "" {
			addr = g.IP.String()
		}
		d.Gateways = append(d.Gateways, GatewayDump{
			Name: k.Namespace + "/" + k.Name, Waypoint: g.Waypoint, For: g.For.String(), Address: addr, HBONEPort: g.HBONEPort,
		})
	}
	for _, k := range slices.SortedFunc(maps.Keys(ix.users), refOrder) {
		u := ix.users[k]
		ud := WaypointUsersDump{Waypoint: k.Namespace + "/" + k.Name, Namespaces: slices.Sorted(maps.Keys(u.namespaces))}
		for w := range u.workloads {
			ud.Workloads = append(ud.Workloads, w.UID)
		}
		for s := range u.services {
			ud.Services = append(ud.Services, s.Ref().String())
		}
		slices.Sort(ud.Workloads)
		slices.Sort(ud.Services)
		d.WaypointUsers = append(d.WaypointUsers, ud)
	}
	return d
}

func nsNameOrder(a, b nsName) int {
	return cmp.Or(strings.Compare(a.ns, b.ns), strings.Compare(a.name, b.name))
}

func refOrder(a, b model.WaypointRef) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

func dumpWorkload(w *model.Workload) WorkloadDump {
	wd := WorkloadDump{
		UID: w.UID, Labels: w.Labels.Map(), Addresses: addrStrings(w.Addresses), Hostname: w.Hostname,
		Node: w.Node.String(), ServiceAccount: w.ServiceAccount.String(), Network: w.Network.String(),
		Locality: w.Locality.String(), Ports: portMap(w.Ports), WorkloadName: w.WorkloadName.String(), Weight: w.Weight,
	}
	for _, f := range []struct {
		f    model.WorkloadFlags
		name string
	}{{model.FlagHostNetwork, "hostNetwork"}, {model.FlagReady, "ready"}, {model.FlagSidecar, "sidecar"}} {
		if w.Has(f.f) {
			wd.Flags = append(wd.Flags, f.name)
		}
	}
	return wd
}

func (ix *Index) dumpService(s *model.Service) ServiceDump {
	sd := ServiceDump{
		Ref: s.Ref().String(), Labels: s.Labels.Map(), Selector: s.Selector.Map(), Hosts: map[string][]string{},
		IPFamilies: s.IPFamilies, SubjectAltNames: s.SubjectAltNames, Created: s.Created,
	}
	for _, h := range s.Hosts {
		sd.Hosts[h.Name] = addrStrings(h.VIPs)
	}
	for _, p := range s.Ports {
		target := fmt.Sprint(p.TargetPort)
		if !p.TargetName.IsZero() {
			target = p.TargetName.String()
		}
		port := fmt.Sprintf("%d->%s", p.Port, target)
		if !p.Name.IsZero() {
			port = p.Name.String() + ":" + port
		}
		sd.Ports = append(sd.Ports, port)
	}
	if lb := s.LoadBalancing; lb != nil {
		sd.LoadBalancing = fmt.Sprintf("mode=%d preferences=%v allowUnhealthy=%t", lb.Mode, lb.Preferences, lb.AllowUnhealthy)
	}
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		sd.Endpoints = append(sd.Endpoints, fmt.Sprintf("%s labels=%v ports=%v", ix.EndpointUID(s, e), e.Labels.Map(), portMap(e.Ports)))
	}
	return sd
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.String())
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func portMap(ps []model.NamedPort) map[string]uint32 {
	if len(ps) == 0 {
		return nil
	}
	m := make(map[string]uint32, len(ps))
	for _, p := range ps {
		m[p.Name.String()] = p.Port
	}
	return m
}
