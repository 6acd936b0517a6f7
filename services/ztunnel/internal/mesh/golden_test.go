package mesh

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/authz"
)

// The resources of xds's golden cases (testdata/xds/README.md), applied as
// xds sends them: every case in one response per type.

type goldenResource struct {
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	Aliases  []string        `json:"aliases"`
	Resource json.RawMessage `json:"resource"`
}

type goldenCase struct {
	name           string
	addresses      []Resource[*workloadpb.Address]
	authorizations []Resource[*securitypb.Authorization]
	aliases        map[string][]string // resource name → aliases
}

// loadGolden reads testdata/xds/<name>.json into protos. Unknown fields
// fail: a field xds starts to emit must be looked at here.
func loadGolden(t testing.TB, name string) goldenCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "xds", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Addresses      []goldenResource `json:"addresses"`
		Authorizations []goldenResource `json:"authorizations"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	gc := goldenCase{name: name, aliases: map[string][]string{}}
	for _, r := range raw.Addresses {
		a := &workloadpb.Address{}
		unmarshalGolden(t, r, a)
		gc.addresses = append(gc.addresses, Resource[*workloadpb.Address]{Name: r.Name, Version: r.Version, Value: a})
		gc.aliases[r.Name] = r.Aliases
	}
	for _, r := range raw.Authorizations {
		a := &securitypb.Authorization{}
		unmarshalGolden(t, r, a)
		gc.authorizations = append(gc.authorizations, Resource[*securitypb.Authorization]{Name: r.Name, Version: r.Version, Value: a})
	}
	if len(gc.addresses)+len(gc.authorizations) == 0 {
		t.Fatalf("%s: no resources", name)
	}
	return gc
}

func unmarshalGolden(t testing.TB, r goldenResource, m proto.Message) {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.Resource, &v); err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	js, err := json.Marshal(ipsAsBytes(v, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
}

// ipsAsBytes undoes what the xds golden renderer does: the bytes fields
// holding IPs ("address", "addresses") are written there as text.
func ipsAsBytes(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = ipsAsBytes(e, k)
		}
	case []any:
		for i, e := range x {
			x[i] = ipsAsBytes(e, key)
		}
	case string:
		if key == "address" || key == "addresses" {
			if a, err := netip.ParseAddr(x); err == nil {
				return base64.StdEncoding.EncodeToString(a.AsSlice())
			}
		}
	}
	return v
}

var goldenCases = []string{
	"workloads-ambient", "services", "waypoints", "authz-fields", "serviceentries", "workloadentries",
	"peerauth-mesh-namespace", "peerauth-mesh-permissive", "peerauth-workload",
}

func applyGolden(t testing.TB, s *Store, gc goldenCase) {
	t.Helper()
	if err := s.ApplyAddresses(gc.addresses, nil); err != nil {
		t.Fatalf("%s: addresses: %v", gc.name, err)
	}
	if err := s.ApplyAuthorizations(gc.authorizations, nil); err != nil {
		t.Fatalf("%s: authorizations: %v", gc.name, err)
	}
}

// Every golden case decodes whole, and the view says what the protos say.
func TestGoldenCasesDecode(t *testing.T) {
	for _, name := range goldenCases {
		t.Run(name, func(t *testing.T) {
			gc := loadGolden(t, name)
			s := New()
			applyGolden(t, s, gc)

			var nw, ns int
			for _, r := range gc.addresses {
				if r.Value.GetWorkload() != nil {
					nw++
				} else {
					ns++
				}
			}
			if got, want := s.Counts(), (Counts{Workloads: nw, Services: ns, Policies: len(gc.authorizations)}); got != want {
				t.Fatalf("counts %+v, want %+v", got, want)
			}
			wantVersions := func(rs []string, vs []string) map[string]string {
				m := map[string]string{}
				for i := range rs {
					m[rs[i]] = vs[i]
				}
				return m
			}
			var an, av, pn, pv []string
			for _, r := range gc.addresses {
				an, av = append(an, r.Name), append(av, r.Version)
			}
			for _, r := range gc.authorizations {
				pn, pv = append(pn, r.Name), append(pv, r.Version)
			}
			if got, want := s.Versions(true), wantVersions(an, av); !maps.Equal(got, want) {
				t.Errorf("address versions %v, want %v", got, want)
			}
			if got, want := s.Versions(false), wantVersions(pn, pv); !maps.Equal(got, want) {
				t.Errorf("authorization versions %v, want %v", got, want)
			}

			for _, r := range gc.addresses {
				if pw := r.Value.GetWorkload(); pw != nil {
					checkWorkload(t, s, r.Name, pw)
				} else {
					checkService(t, s, r.Name, r.Value.GetService())
				}
				// Every alias xds gives ("<network>/<ip>") finds the resource.
				for _, alias := range gc.aliases[r.Name] {
					_, ipText, _ := strings.Cut(alias, "/")
					a := netip.MustParseAddr(ipText)
					if r.Value.GetWorkload() != nil {
						if w, ok := s.WorkloadByIP(a); !ok || w.UID != r.Name {
							t.Errorf("alias %s: workload %v, want %s", alias, w, r.Name)
						}
					} else if svc, ok := s.ServiceByVIP(a); !ok || svc.Key != r.Name {
						t.Errorf("alias %s: service %v, want %s", alias, svc, r.Name)
					}
				}
			}

			// Istio's selection, computed from the protos: GLOBAL
			// everywhere, NAMESPACE in its namespace, WORKLOAD_SELECTOR
			// where the workload lists it.
			for _, r := range gc.addresses {
				pw := r.Value.GetWorkload()
				if pw == nil {
					continue
				}
				var want []string
				for _, p := range gc.authorizations {
					key := p.Value.GetNamespace() + "/" + p.Value.GetName()
					switch p.Value.GetScope() {
					case securitypb.Scope_GLOBAL:
						want = append(want, key)
					case securitypb.Scope_NAMESPACE:
						if p.Value.GetNamespace() == pw.GetNamespace() {
							want = append(want, key)
						}
					case securitypb.Scope_WORKLOAD_SELECTOR:
						if slices.Contains(pw.GetAuthorizationPolicies(), key) {
							want = append(want, key)
						}
					}
				}
				w, _ := s.WorkloadByUID(r.Name)
				if got := policyKeys(s.Policies(w)); !slices.Equal(got, sorted(want)) {
					t.Errorf("%s: policies %v, want %v", r.Name, got, sorted(want))
				}
			}

			if _, err := json.Marshal(s.Dump()); err != nil {
				t.Errorf("dump: %v", err)
			}
		})
	}
}

func checkWorkload(t *testing.T, s *Store, name string, pw *workloadpb.Workload) {
	t.Helper()
	w, ok := s.WorkloadByUID(name)
	if !ok {
		t.Errorf("workload %s missing", name)
		return
	}
	if w.UID != pw.GetUid() || w.Name != pw.GetName() || w.Namespace != pw.GetNamespace() ||
		w.ServiceAccount != pw.GetServiceAccount() || w.TrustDomain != pw.GetTrustDomain() || w.Node != pw.GetNode() ||
		w.ClusterID != pw.GetClusterId() || w.App != pw.GetCanonicalName() || w.Version != pw.GetCanonicalRevision() ||
		w.WorkloadName != pw.GetWorkloadName() {
		t.Errorf("%s: decoded %+v from %v", name, w, pw)
	}
	if w.HBONE != (pw.GetTunnelProtocol() == workloadpb.TunnelProtocol_HBONE) {
		t.Errorf("%s: HBONE %v, tunnel protocol %v", name, w.HBONE, pw.GetTunnelProtocol())
	}
	if w.HostNetwork != (pw.GetNetworkMode() == workloadpb.NetworkMode_HOST_NETWORK) {
		t.Errorf("%s: host network %v, network mode %v", name, w.HostNetwork, pw.GetNetworkMode())
	}
	if w.Healthy != (pw.GetStatus() == workloadpb.WorkloadStatus_HEALTHY) {
		t.Errorf("%s: healthy %v, status %v", name, w.Healthy, pw.GetStatus())
	}
	if len(w.Addrs) != len(pw.GetAddresses()) {
		t.Errorf("%s: addresses %v", name, w.Addrs)
	}
	for i, b := range pw.GetAddresses() {
		a, _ := netip.AddrFromSlice(b)
		if i < len(w.Addrs) && w.Addrs[i] != a {
			t.Errorf("%s: address %d is %v, want %v", name, i, w.Addrs[i], a)
		}
		got, ok := s.WorkloadByIP(a)
		if pw.GetNetworkMode() == workloadpb.NetworkMode_HOST_NETWORK {
			// The node's address: it does not identify the workload.
			if ok && got == w {
				t.Errorf("%s: a host-network workload found by IP %v", name, a)
			}
		} else if !ok || got != w {
			t.Errorf("%s: WorkloadByIP(%v) = %v", name, a, got)
		}
	}
	if !slices.Equal(w.Policies, pw.GetAuthorizationPolicies()) {
		t.Errorf("%s: policies %v", name, w.Policies)
	}
	if len(w.Services) != len(pw.GetServices()) {
		t.Errorf("%s: services %v", name, w.Services)
	}
	for key, pl := range pw.GetServices() {
		var want []PortMap
		for _, p := range pl.GetPorts() {
			want = append(want, PortMap{Service: uint16(p.GetServicePort()), Target: uint16(p.GetTargetPort())})
		}
		if !slices.Equal(w.Services[key], want) {
			t.Errorf("%s: ports of %s %v, want %v", name, key, w.Services[key], want)
		}
	}
	checkGateway(t, name, w.Waypoint, pw.GetWaypoint())
}

func checkService(t *testing.T, s *Store, name string, ps *workloadpb.Service) {
	t.Helper()
	svc, ok := s.Service(name)
	if !ok {
		t.Errorf("service %s missing", name)
		return
	}
	if svc.Key != ps.GetNamespace()+"/"+ps.GetHostname() || svc.Name != ps.GetName() || svc.Namespace != ps.GetNamespace() || svc.Hostname != ps.GetHostname() {
		t.Errorf("%s: decoded %+v", name, svc)
	}
	if svc.AllowUnhealthy != (ps.GetLoadBalancing().GetHealthPolicy() == workloadpb.LoadBalancing_ALLOW_ALL) {
		t.Errorf("%s: allow unhealthy %v", name, svc.AllowUnhealthy)
	}
	if len(svc.VIPs) != len(ps.GetAddresses()) {
		t.Errorf("%s: VIPs %v", name, svc.VIPs)
	}
	for _, na := range ps.GetAddresses() {
		a, _ := netip.AddrFromSlice(na.GetAddress())
		if got, ok := s.ServiceByVIP(a); !ok || got != svc {
			t.Errorf("%s: ServiceByVIP(%v) = %v", name, a, got)
		}
	}
	var want []PortMap
	for _, p := range ps.GetPorts() {
		want = append(want, PortMap{Service: uint16(p.GetServicePort()), Target: uint16(p.GetTargetPort())})
	}
	if !slices.Equal(svc.Ports, want) {
		t.Errorf("%s: ports %v, want %v", name, svc.Ports, want)
	}
	checkGateway(t, name, svc.Waypoint, ps.GetWaypoint())
}

func checkGateway(t *testing.T, name string, g *Gateway, pg *workloadpb.GatewayAddress) {
	t.Helper()
	if pg == nil {
		if g != nil {
			t.Errorf("%s: waypoint %+v from nothing", name, g)
		}
		return
	}
	want := Gateway{HBONEPort: uint16(pg.GetHboneMtlsPort())}
	if want.HBONEPort == 0 {
		want.HBONEPort = 15008
	}
	if h := pg.GetHostname(); h != nil {
		want.Service = h.GetNamespace() + "/" + h.GetHostname()
	} else {
		want.Addr, _ = netip.AddrFromSlice(pg.GetAddress().GetAddress())
	}
	if g == nil || *g != want {
		t.Errorf("%s: waypoint %+v, want %+v", name, g, want)
	}
}

func policyKeys(ps []*authz.Policy) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Key())
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// Named expectations on the cases, beyond "what the proto says".

func TestGoldenWorkloadsAmbient(t *testing.T) {
	s := New()
	applyGolden(t, s, loadGolden(t, "workloads-ambient"))

	cart, ok := s.WorkloadByIP(netip.MustParseAddr("fd00::10"))
	if !ok || cart.UID != "Kubernetes//Pod/shop/cart-7d4b9c-x2k9p" {
		t.Fatalf("by IPv6: %v", cart)
	}
	if w, _ := s.WorkloadByIP(netip.MustParseAddr("10.1.0.10")); w != cart {
		t.Fatal("the workload's two addresses lead to different workloads")
	}
	if w, _ := s.WorkloadByIP(netip.MustParseAddr("::ffff:10.1.0.10")); w != cart {
		t.Fatal("a v4-mapped address does not find the IPv4 workload")
	}
	if !cart.HBONE || !cart.Healthy || cart.App != "cart" || cart.Version != "v2" || cart.Node != "node-a" ||
		cart.Identity() != "spiffe://cluster.local/ns/shop/sa/cart" {
		t.Fatalf("cart %+v", cart)
	}
	plain, _ := s.WorkloadByUID("Kubernetes//Pod/legacy/plain")
	if plain == nil || plain.HBONE {
		t.Fatalf("a workload without tunnel protocol is plaintext: %+v", plain)
	}
	old, _ := s.WorkloadByUID("Kubernetes//Pod/shop/cart-old")
	if old == nil || old.Healthy || !old.HBONE {
		t.Fatalf("UNHEALTHY: %+v", old)
	}
	exporter, _ := s.WorkloadByUID("Kubernetes//Pod/shop/node-exporter")
	if exporter == nil || !exporter.HostNetwork {
		t.Fatalf("HOST_NETWORK: %+v", exporter)
	}
	if w, ok := s.WorkloadByIP(netip.MustParseAddr("192.168.0.10")); ok {
		t.Fatalf("the node's address finds the host-network pod %s", w.UID)
	}
	if _, ok := s.WorkloadByIP(netip.MustParseAddr("10.1.0.99")); ok {
		t.Fatal("an unknown IP found a workload")
	}
}

func TestGoldenServicesEndpoints(t *testing.T) {
	s := New()
	applyGolden(t, s, loadGolden(t, "services"))

	reviews, ok := s.ServiceByVIP(netip.MustParseAddr("fd00:96::20"))
	if !ok || reviews.Key != "bookinfo/reviews.bookinfo.svc.cluster.local" {
		t.Fatalf("reviews by IPv6 VIP: %v", reviews)
	}
	if v4, _ := s.ServiceByVIP(netip.MustParseAddr("10.96.0.20")); v4 != reviews {
		t.Fatal("the two VIPs lead to different services")
	}
	// 9080 is a named target port: only reviews-v1 resolves it (to 9081).
	if got := endpoints(s.Endpoints(reviews, 9080)); got != "reviews-v1:9081" {
		t.Errorf("reviews:9080 → %s", got)
	}
	if got := endpoints(s.Endpoints(reviews, 9090)); got != "reviews-v1:15020 reviews-v2:15020" {
		t.Errorf("reviews:9090 → %s", got)
	}
	if got := s.Endpoints(reviews, 1234); len(got) != 0 {
		t.Errorf("a port the service does not have: %v", got)
	}
	lb, _ := s.ServiceByVIP(netip.MustParseAddr("203.0.113.7"))
	if got := endpoints(s.Endpoints(lb, 80)); got != "ratings-v1:9080" {
		t.Errorf("gateway-lb:80 → %s", got)
	}
	ratings, _ := s.ServiceByVIP(netip.MustParseAddr("10.96.0.21"))
	if !ratings.AllowUnhealthy {
		t.Error("ratings has healthPolicy ALLOW_ALL")
	}
	headless, ok := s.Service("bookinfo/reviews-headless.bookinfo.svc.cluster.local")
	if !ok || len(headless.VIPs) != 0 {
		t.Fatalf("headless %+v", headless)
	}
	if got := endpoints(s.Endpoints(headless, 9080)); got != "reviews-v1:9080 reviews-v2:9080" {
		t.Errorf("headless:9080 → %s", got)
	}
	db, _ := s.ServiceByVIP(netip.MustParseAddr("10.96.0.23"))
	if got := s.Endpoints(db, 5432); len(got) != 0 {
		t.Errorf("a service without workloads: %v", got)
	}
}

func TestGoldenWaypoints(t *testing.T) {
	s := New()
	applyGolden(t, s, loadGolden(t, "waypoints"))

	byAddr, _ := s.WorkloadByUID("Kubernetes//Pod/app/orders-1")
	if byAddr == nil || byAddr.Waypoint == nil || *byAddr.Waypoint != (Gateway{Addr: netip.MustParseAddr("10.96.5.2"), HBONEPort: 15009}) {
		t.Fatalf("waypoint by address: %+v", byAddr)
	}
	byName, _ := s.WorkloadByUID("Kubernetes//Pod/app/orders-2")
	if byName.Waypoint != nil {
		t.Fatalf("orders-2 has no waypoint of its own: %+v", byName.Waypoint)
	}
	client, _ := s.WorkloadByUID("Kubernetes//Pod/shared/shared-client")
	if client.Waypoint == nil || *client.Waypoint != (Gateway{Service: "shared/shared-waypoint.shared.svc.cluster.local", HBONEPort: 15008}) {
		t.Fatalf("waypoint by hostname: %+v", client.Waypoint)
	}
	frontend, _ := s.ServiceByVIP(netip.MustParseAddr("10.96.6.1"))
	if frontend.Waypoint == nil || frontend.Waypoint.Service != "app/waypoint.app.svc.cluster.local" {
		t.Fatalf("frontend's waypoint %+v", frontend.Waypoint)
	}
	// The proxy resolves a waypoint given by name to one of its endpoints.
	wp, ok := s.Service(frontend.Waypoint.Service)
	if !ok {
		t.Fatal("the waypoint service is unknown")
	}
	if got := endpoints(s.Endpoints(wp, frontend.Waypoint.HBONEPort)); got != "waypoint-5f8d-abcde:15008" {
		t.Errorf("waypoint endpoints %s", got)
	}
	if healthz, _ := s.ServiceByVIP(netip.MustParseAddr("10.96.6.2")); healthz.Waypoint != nil {
		t.Errorf("healthz has no waypoint: %+v", healthz.Waypoint)
	}
}

func TestGoldenAuthorizationSelection(t *testing.T) {
	s := New()
	applyGolden(t, s, loadGolden(t, "authz-fields"))
	for uid, want := range map[string][]string{
		"Kubernetes//Pod/ns1/api-1": {"istio-system/backends-from-mesh", "istio-system/deny-blocked-ns", "ns1/operations-and-conditions", "ns1/sources"},
		"Kubernetes//Pod/ns1/web-1": {"istio-system/deny-blocked-ns", "ns1/allow-l7", "ns1/deny-l7"},
		"Kubernetes//Pod/ns2/api-1": {"istio-system/backends-from-mesh", "istio-system/deny-blocked-ns", "ns2/allow-all", "ns2/allow-nothing"},
	} {
		w, ok := s.WorkloadByUID(uid)
		if !ok {
			t.Fatalf("%s missing", uid)
		}
		if got := policyKeys(s.Policies(w)); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", uid, got, want)
		}
	}
	// A workload the view does not list policies for (say, from another
	// namespace) gets only the GLOBAL ones.
	if got := policyKeys(s.Policies(&Workload{Namespace: "ns3"})); !slices.Equal(got, []string{"istio-system/deny-blocked-ns"}) {
		t.Errorf("ns3: %v", got)
	}
}

// endpoints renders endpoints as "name:port ...".
func endpoints(eps []Endpoint) string {
	var parts []string
	for _, ep := range eps {
		parts = append(parts, ep.Workload.Name+":"+strconv.Itoa(int(ep.Port)))
	}
	return strings.Join(parts, " ")
}
