package mesh

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
)

// Builders of xds resources in the shapes our xds emits
// (testdata/xds): the resource name of a workload is its uid, that of a
// service "<namespace>/<hostname>", that of a policy "<namespace>/<name>".

type pwOpt func(*workloadpb.Workload)

func pWorkload(ns, name, addr string, opts ...pwOpt) Resource[*workloadpb.Address] {
	w := &workloadpb.Workload{
		Uid: "Kubernetes//Pod/" + ns + "/" + name, Name: name, Namespace: ns, ServiceAccount: "default",
		TrustDomain: "cluster.local", ClusterId: "Kubernetes", Node: "node-a", CanonicalName: name, CanonicalRevision: "latest",
		WorkloadName: name, WorkloadType: workloadpb.WorkloadType_POD, TunnelProtocol: workloadpb.TunnelProtocol_HBONE,
	}
	if addr != "" {
		w.Addresses = [][]byte{netip.MustParseAddr(addr).AsSlice()}
	}
	uid := w.GetUid()
	for _, o := range opts {
		o(w)
	}
	return Resource[*workloadpb.Address]{Name: uid, Version: "v1", Value: &workloadpb.Address{Type: &workloadpb.Address_Workload{Workload: w}}}
}

// serving lists the workload as an endpoint of service key with
// service→target port pairs.
func serving(key string, ports ...uint32) pwOpt {
	return func(w *workloadpb.Workload) {
		if w.Services == nil {
			w.Services = map[string]*workloadpb.PortList{}
		}
		pl := &workloadpb.PortList{}
		for i := 0; i+1 < len(ports); i += 2 {
			pl.Ports = append(pl.Ports, &workloadpb.Port{ServicePort: ports[i], TargetPort: ports[i+1]})
		}
		w.Services[key] = pl
	}
}

func unhealthy(w *workloadpb.Workload) { w.Status = workloadpb.WorkloadStatus_UNHEALTHY }

func listing(keys ...string) pwOpt {
	return func(w *workloadpb.Workload) { w.AuthorizationPolicies = keys }
}

type psOpt func(*workloadpb.Service)

func pService(ns, name, vip string, opts ...psOpt) Resource[*workloadpb.Address] {
	host := name + "." + ns + ".svc.cluster.local"
	s := &workloadpb.Service{Name: name, Namespace: ns, Hostname: host}
	if vip != "" {
		s.Addresses = []*workloadpb.NetworkAddress{{Address: netip.MustParseAddr(vip).AsSlice()}}
	}
	for _, o := range opts {
		o(s)
	}
	return Resource[*workloadpb.Address]{Name: ns + "/" + host, Version: "v1", Value: &workloadpb.Address{Type: &workloadpb.Address_Service{Service: s}}}
}

func ports(pairs ...uint32) psOpt {
	return func(s *workloadpb.Service) {
		for i := 0; i+1 < len(pairs); i += 2 {
			s.Ports = append(s.Ports, &workloadpb.Port{ServicePort: pairs[i], TargetPort: pairs[i+1]})
		}
	}
}

func allowAll(s *workloadpb.Service) {
	s.LoadBalancing = &workloadpb.LoadBalancing{HealthPolicy: workloadpb.LoadBalancing_ALLOW_ALL}
}

func pPolicy(ns, name string, scope securitypb.Scope, action securitypb.Action) Resource[*securitypb.Authorization] {
	return Resource[*securitypb.Authorization]{Name: ns + "/" + name, Version: "v1", Value: &securitypb.Authorization{
		Name: name, Namespace: ns, Scope: scope, Action: action,
		Groups: []*securitypb.Group{{Rules: []*securitypb.Rules{{Matches: []*securitypb.Match{{DestinationPorts: []uint32{8080}}}}}}},
	}}
}

func versioned[T any](r Resource[T], v string) Resource[T] { r.Version = v; return r }

func addrs(rs ...Resource[*workloadpb.Address]) []Resource[*workloadpb.Address] { return rs }

func mustApply(t *testing.T, s *Store, ups []Resource[*workloadpb.Address], removes ...string) {
	t.Helper()
	if err := s.ApplyAddresses(ups, removes); err != nil {
		t.Fatal(err)
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func mustIP(s string) netip.Addr { return netip.MustParseAddr(s) }

const echoKey = "demo/echo.demo.svc.cluster.local"

// A response with one resource that does not decode is refused whole: the
// error names the resource and the field, the view is the very snapshot it
// was, and nobody is told of a change.
func TestBadAddressRejectsWholeResponse(t *testing.T) {
	bad5 := []byte{10, 0, 0, 1, 9}
	cases := []struct {
		name  string
		res   Resource[*workloadpb.Address]
		wants []string
	}{
		{"workload address of 5 bytes", pWorkload("demo", "x", "", func(w *workloadpb.Workload) { w.Addresses = [][]byte{bad5} }),
			[]string{`"Kubernetes//Pod/demo/x"`, "workload.addresses[0]", "5 bytes"}},
		{"second workload address bad", pWorkload("demo", "x", "10.0.0.9", func(w *workloadpb.Workload) { w.Addresses = append(w.Addresses, []byte{}) }),
			[]string{`"Kubernetes//Pod/demo/x"`, "workload.addresses[1]", "0 bytes"}},
		{"workload service port above 65535", pWorkload("demo", "x", "10.0.0.9", serving(echoKey, 80, 8080, 70000, 8080)),
			[]string{`"Kubernetes//Pod/demo/x"`, `workload.services["demo/echo.demo.svc.cluster.local"].ports[1].service_port`, "70000"}},
		{"workload target port above 65535", pWorkload("demo", "x", "10.0.0.9", serving(echoKey, 80, 65536)),
			[]string{`"Kubernetes//Pod/demo/x"`, `.ports[0].target_port`, "65536"}},
		{"workload without uid", pWorkload("demo", "x", "10.0.0.9", func(w *workloadpb.Workload) { w.Uid = "" }),
			[]string{`"Kubernetes//Pod/demo/x"`, "workload.uid", "required"}},
		{"workload waypoint address of 5 bytes", pWorkload("demo", "x", "10.0.0.9", func(w *workloadpb.Workload) {
			w.Waypoint = &workloadpb.GatewayAddress{Destination: &workloadpb.GatewayAddress_Address{Address: &workloadpb.NetworkAddress{Address: bad5}}}
		}), []string{`"Kubernetes//Pod/demo/x"`, "workload.waypoint.address", "5 bytes"}},
		{"workload waypoint port above 65535", pWorkload("demo", "x", "10.0.0.9", func(w *workloadpb.Workload) {
			w.Waypoint = &workloadpb.GatewayAddress{HboneMtlsPort: 70000, Destination: &workloadpb.GatewayAddress_Hostname{
				Hostname: &workloadpb.NamespacedHostname{Namespace: "demo", Hostname: "wp.demo.svc.cluster.local"}}}
		}), []string{`"Kubernetes//Pod/demo/x"`, "workload.waypoint.hbone_mtls_port", "70000"}},
		{"workload waypoint without destination", pWorkload("demo", "x", "10.0.0.9", func(w *workloadpb.Workload) {
			w.Waypoint = &workloadpb.GatewayAddress{HboneMtlsPort: 15008}
		}), []string{`"Kubernetes//Pod/demo/x"`, "workload.waypoint", "no destination"}},
		{"service without hostname", pService("demo", "nohost", "10.96.0.99", func(s *workloadpb.Service) { s.Hostname = "" }),
			[]string{`"demo/nohost.demo.svc.cluster.local"`, "service.hostname", "required"}},
		{"service address of 5 bytes", pService("demo", "s", "", func(s *workloadpb.Service) {
			s.Addresses = []*workloadpb.NetworkAddress{{Address: bad5}}
		}), []string{`"demo/s.demo.svc.cluster.local"`, "service.addresses[0]", "5 bytes"}},
		{"service port above 65535", pService("demo", "s", "10.96.0.99", ports(80, 8080, 70000, 80)),
			[]string{`"demo/s.demo.svc.cluster.local"`, "service.ports[1].service_port", "70000"}},
		{"service target port above 65535", pService("demo", "s", "10.96.0.99", ports(80, 1<<20)),
			[]string{`"demo/s.demo.svc.cluster.local"`, "service.ports[0].target_port"}},
		{"service waypoint port above 65535", pService("demo", "s", "10.96.0.99", func(s *workloadpb.Service) {
			s.Waypoint = &workloadpb.GatewayAddress{HboneMtlsPort: 1 << 17, Destination: &workloadpb.GatewayAddress_Address{
				Address: &workloadpb.NetworkAddress{Address: mustIP("10.96.5.2").AsSlice()}}}
		}), []string{`"demo/s.demo.svc.cluster.local"`, "service.waypoint.hbone_mtls_port"}},
		{"address of neither kind", Resource[*workloadpb.Address]{Name: "demo/empty", Value: &workloadpb.Address{}},
			[]string{`"demo/empty"`, "neither a workload nor a service"}},
		{"address without body", Resource[*workloadpb.Address]{Name: "demo/nil"},
			[]string{`"demo/nil"`, "neither a workload nor a service"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			mustApply(t, s, addrs(
				pWorkload("demo", "a", "10.0.0.1", serving(echoKey, 80, 8080)),
				pService("demo", "echo", "10.96.0.10", ports(80, 8080)),
			))
			before, versions, changed := s.cur.Load(), s.Versions(true), s.Changed()

			// The bad resource rides with a good upsert, a good update and a
			// removal: none of them may land.
			err := s.ApplyAddresses(addrs(
				pWorkload("demo", "c", "10.0.0.3"),
				versioned(pWorkload("demo", "a", "10.0.0.11"), "v2"),
				tc.res,
			), []string{echoKey})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if s.cur.Load() != before {
				t.Error("a new snapshot was published")
			}
			if closed(changed) {
				t.Error("Changed closed by a rejected response")
			}
			if v := s.Versions(true); !maps.Equal(v, versions) {
				t.Errorf("versions %v, want %v", v, versions)
			}
			if _, ok := s.WorkloadByIP(mustIP("10.0.0.3")); ok {
				t.Error("the good upsert of the rejected response landed")
			}
			if w, ok := s.WorkloadByIP(mustIP("10.0.0.1")); !ok || w.UID != "Kubernetes//Pod/demo/a" {
				t.Error("the update of the rejected response landed")
			}
			if _, ok := s.ServiceByVIP(mustIP("10.96.0.10")); !ok {
				t.Error("the removal of the rejected response landed")
			}

			// The same response without the bad resource is taken.
			if err := s.ApplyAddresses(addrs(pWorkload("demo", "c", "10.0.0.3")), nil); err != nil {
				t.Fatal(err)
			}
			if !closed(changed) {
				t.Error("Changed not closed by the next good response")
			}
		})
	}
}

// Every bad resource of a response is named, not only the first.
func TestBadAddressesAllNamed(t *testing.T) {
	s := New()
	err := s.ApplyAddresses(addrs(
		pWorkload("demo", "x", "", func(w *workloadpb.Workload) { w.Addresses = [][]byte{{1, 2, 3}} }),
		pWorkload("demo", "ok", "10.0.0.1"),
		pService("demo", "s", "10.96.0.1", ports(99999, 80)),
	), nil)
	if err == nil || !strings.Contains(err.Error(), "Kubernetes//Pod/demo/x") || !strings.Contains(err.Error(), "demo/s.demo.svc.cluster.local") {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(err.Error(), "demo/ok") {
		t.Errorf("the good resource is named: %v", err)
	}
	if c := s.Counts(); c != (Counts{}) {
		t.Fatalf("counts %+v", c)
	}
}

func TestBadAuthorizationRejectsWholeResponse(t *testing.T) {
	s := New()
	keep := pPolicy("demo", "keep", securitypb.Scope_NAMESPACE, securitypb.Action_ALLOW)
	if err := s.ApplyAuthorizations([]Resource[*securitypb.Authorization]{keep}, nil); err != nil {
		t.Fatal(err)
	}
	before, changed := s.cur.Load(), s.Changed()
	for name, c := range map[string]struct {
		mutate func(*securitypb.Authorization)
		wants  []string
	}{
		"port above 65535": {func(a *securitypb.Authorization) {
			a.Groups[0].Rules[0].Matches[0].DestinationPorts = []uint32{8080, 70000}
		}, []string{`authorization "demo/bad"`, "groups[0].rules[0].matches[0].destination_ports[1]"}},
		"source address of 5 bytes": {func(a *securitypb.Authorization) {
			a.Groups[0].Rules[0].Matches[0].SourceIps = []*securitypb.Address{{Address: []byte{10, 0, 0, 0, 1}, Length: 8}}
		}, []string{`authorization "demo/bad"`, "source_ips[0]"}},
		"unknown scope":  {func(a *securitypb.Authorization) { a.Scope = 7 }, []string{`authorization "demo/bad"`, "scope"}},
		"unknown action": {func(a *securitypb.Authorization) { a.Action = 9 }, []string{`authorization "demo/bad"`, "action"}},
	} {
		t.Run(name, func(t *testing.T) {
			bad := pPolicy("demo", "bad", securitypb.Scope_WORKLOAD_SELECTOR, securitypb.Action_DENY)
			c.mutate(bad.Value)
			err := s.ApplyAuthorizations([]Resource[*securitypb.Authorization]{
				pPolicy("demo", "new", securitypb.Scope_GLOBAL, securitypb.Action_ALLOW), bad,
			}, []string{"demo/keep"})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if s.cur.Load() != before || closed(changed) {
				t.Fatal("the view changed")
			}
			if got := policyKeys(s.Policies(&Workload{Namespace: "demo"})); !slices.Equal(got, []string{"demo/keep"}) {
				t.Fatalf("policies %v", got)
			}
		})
	}
}

func TestRemovesAndReplaces(t *testing.T) {
	s := New()
	mustApply(t, s, addrs(
		pWorkload("demo", "a", "10.0.0.1", serving(echoKey, 80, 8080)),
		pWorkload("demo", "b", "10.0.0.2", serving(echoKey, 80, 8080)),
		pService("demo", "echo", "10.96.0.10", ports(80, 8080)),
		pService("demo", "other", "10.96.0.11", ports(80, 80)),
	))
	// Removing names that are not held is no error.
	mustApply(t, s, nil, "Kubernetes//Pod/demo/a", "demo/other.demo.svc.cluster.local", "nobody/ever")
	if _, ok := s.WorkloadByIP(mustIP("10.0.0.1")); ok {
		t.Error("removed workload found by IP")
	}
	if _, ok := s.WorkloadByUID("Kubernetes//Pod/demo/a"); ok {
		t.Error("removed workload found by uid")
	}
	if _, ok := s.ServiceByVIP(mustIP("10.96.0.11")); ok {
		t.Error("removed service found by VIP")
	}
	if _, ok := s.Service("demo/other.demo.svc.cluster.local"); ok {
		t.Error("removed service found by key")
	}
	echo, _ := s.Service(echoKey)
	if got := endpoints(s.Endpoints(echo, 80)); got != "b:8080" {
		t.Errorf("endpoints after removal: %s", got)
	}
	if v := s.Versions(true); len(v) != 2 || v["Kubernetes//Pod/demo/b"] != "v1" || v[echoKey] != "v1" {
		t.Errorf("versions %v", v)
	}

	// A new version moves b to another IP and off the service: the old IP
	// and the old endpoint are gone with it.
	mustApply(t, s, addrs(versioned(pWorkload("demo", "b", "10.0.0.20"), "v2")))
	if _, ok := s.WorkloadByIP(mustIP("10.0.0.2")); ok {
		t.Error("the old IP of an updated workload still finds it")
	}
	if w, ok := s.WorkloadByIP(mustIP("10.0.0.20")); !ok || w.Name != "b" {
		t.Error("the new IP does not find the workload")
	}
	if eps := s.Endpoints(echo, 80); len(eps) != 0 {
		t.Errorf("a workload that left the service is still an endpoint: %s", endpoints(eps))
	}
	if v := s.Versions(true)["Kubernetes//Pod/demo/b"]; v != "v2" {
		t.Errorf("version %q", v)
	}

	// Removed and upserted in one response: the upsert wins.
	mustApply(t, s, addrs(versioned(pWorkload("demo", "b", "10.0.0.21"), "v3")), "Kubernetes//Pod/demo/b")
	if w, ok := s.WorkloadByIP(mustIP("10.0.0.21")); !ok || w.Name != "b" {
		t.Error("removed and upserted in one response: missing")
	}

	// A name that turns from a workload into a service.
	mustApply(t, s, addrs(Resource[*workloadpb.Address]{Name: "Kubernetes//Pod/demo/b", Version: "v4",
		Value: pService("demo", "b", "10.96.0.12").Value}))
	if _, ok := s.WorkloadByUID("Kubernetes//Pod/demo/b"); ok {
		t.Error("the workload is still held under a name that is a service now")
	}
	if _, ok := s.ServiceByVIP(mustIP("10.96.0.12")); !ok {
		t.Error("the service is not held")
	}

	// Authorizations.
	if err := s.ApplyAuthorizations([]Resource[*securitypb.Authorization]{
		pPolicy("demo", "p1", securitypb.Scope_NAMESPACE, securitypb.Action_ALLOW),
		pPolicy("demo", "p2", securitypb.Scope_NAMESPACE, securitypb.Action_DENY),
	}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyAuthorizations(nil, []string{"demo/p1", "demo/none"}); err != nil {
		t.Fatal(err)
	}
	if got := policyKeys(s.Policies(&Workload{Namespace: "demo"})); !slices.Equal(got, []string{"demo/p2"}) {
		t.Errorf("policies %v", got)
	}
	if v := s.Versions(false); !maps.Equal(v, map[string]string{"demo/p2": "v1"}) {
		t.Errorf("versions %v", v)
	}
}

func TestEndpointsHealthAndTargetPorts(t *testing.T) {
	s := New()
	mustApply(t, s, addrs(
		pService("demo", "echo", "10.96.0.10", ports(80, 8080, 90, 0, 7000, 7000)),
		pService("demo", "all", "10.96.0.11", ports(80, 8080), allowAll),
		// b and a serve 80 on different target ports; b sorts after a.
		pWorkload("demo", "b", "10.0.0.2", serving(echoKey, 80, 8081, 90, 0)),
		pWorkload("demo", "a", "10.0.0.1", serving(echoKey, 80, 8080, 90, 9090), serving("demo/all.demo.svc.cluster.local", 80, 8080)),
		// Unhealthy: only ALLOW_ALL services use it.
		pWorkload("demo", "sick", "10.0.0.3", unhealthy, serving(echoKey, 80, 8080), serving("demo/all.demo.svc.cluster.local", 80, 8080)),
		// Serves echo, but not port 90 (a named target port it lacks).
		pWorkload("demo", "partial", "10.0.0.4", serving(echoKey, 80, 8080)),
		// Lists the service with no ports at all.
		pWorkload("demo", "none", "10.0.0.5", serving(echoKey)),
	))
	echo, _ := s.ServiceByVIP(mustIP("10.96.0.10"))
	all, _ := s.ServiceByVIP(mustIP("10.96.0.11"))
	for _, c := range []struct {
		svc  *Service
		port uint16
		want string
	}{
		{echo, 80, "a:8080 b:8081 partial:8080"},
		{echo, 90, "a:9090 b:90"}, // target 0: the same port
		{echo, 7000, ""},          // no workload maps it
		{echo, 8080, ""},          // a target port is no service port
		{all, 80, "a:8080 sick:8080"},
	} {
		if got := endpoints(s.Endpoints(c.svc, c.port)); got != c.want {
			t.Errorf("%s:%d → %q, want %q", c.svc.Name, c.port, got, c.want)
		}
	}
	// The workload turns healthy: it is an endpoint again.
	mustApply(t, s, addrs(versioned(pWorkload("demo", "sick", "10.0.0.3", serving(echoKey, 80, 8080)), "v2")))
	if got := endpoints(s.Endpoints(echo, 80)); got != "a:8080 b:8081 partial:8080 sick:8080" {
		t.Errorf("after recovery: %s", got)
	}
	if got := endpoints(s.Endpoints(all, 80)); got != "a:8080" {
		t.Errorf("after sick left all: %s", got)
	}
	// A service not in the view has no endpoints.
	if eps := s.Endpoints(&Service{Key: "demo/ghost.demo.svc.cluster.local"}, 80); len(eps) != 0 {
		t.Errorf("ghost: %v", eps)
	}
}

func TestDecodeDefaultsAndMissing(t *testing.T) {
	s := New()
	mustApply(t, s, addrs(
		pWorkload("demo", "bare", "10.0.0.1", func(w *workloadpb.Workload) {
			w.TrustDomain, w.ServiceAccount, w.TunnelProtocol = "", "", workloadpb.TunnelProtocol_NONE
		}),
		pWorkload("demo", "hostonly", "", func(w *workloadpb.Workload) { w.Hostname = "vm.example" }),
		pWorkload("demo", "mapped", "::ffff:10.0.0.7"),
		pService("demo", "mappedvip", "::ffff:10.96.0.7"),
	))
	bare, _ := s.WorkloadByUID("Kubernetes//Pod/demo/bare")
	if bare.HBONE || bare.Identity() != "spiffe://cluster.local/ns/demo/sa/default" {
		t.Errorf("defaults: %+v %s", bare, bare.Identity())
	}
	if w, ok := s.WorkloadByUID("Kubernetes//Pod/demo/hostonly"); !ok || len(w.Addrs) != 0 {
		t.Errorf("a workload without addresses: %+v", w)
	}
	// v4-mapped addresses are held as IPv4 and found either way.
	for _, a := range []string{"10.0.0.7", "::ffff:10.0.0.7"} {
		if w, ok := s.WorkloadByIP(mustIP(a)); !ok || w.Name != "mapped" {
			t.Errorf("WorkloadByIP(%s) = %v", a, w)
		}
	}
	for _, a := range []string{"10.96.0.7", "::ffff:10.96.0.7"} {
		if svc, ok := s.ServiceByVIP(mustIP(a)); !ok || svc.Name != "mappedvip" {
			t.Errorf("ServiceByVIP(%s) = %v", a, svc)
		}
	}
	if _, ok := s.ServiceByVIP(mustIP("10.0.0.7")); ok {
		t.Error("a workload IP found a service")
	}
	if _, ok := s.WorkloadByIP(mustIP("10.96.0.7")); ok {
		t.Error("a VIP found a workload")
	}
}

// Addresses that do not identify one workload: host-network pods share
// their node's, and while xds catches up (a recycled pod IP) or by
// configuration (a WorkloadEntry on a pod's IP) two workloads may claim
// one. The answer is Istio's and does not depend on map order.
func TestSharedAddresses(t *testing.T) {
	hostNet := func(w *workloadpb.Workload) {
		w.NetworkMode = workloadpb.NetworkMode_HOST_NETWORK
		w.TunnelProtocol = workloadpb.TunnelProtocol_NONE
	}
	plain := func(w *workloadpb.Workload) { w.TunnelProtocol = workloadpb.TunnelProtocol_NONE }
	entry := func(w *workloadpb.Workload) { w.Uid = "Kubernetes/networking.istio.io/WorkloadEntry/demo/" + w.Name }
	for range 20 { // map order varies from run to run
		s := New()
		mustApply(t, s, addrs(
			pWorkload("kube-system", "kube-proxy", "192.168.0.10", hostNet),
			pWorkload("monitoring", "node-exporter", "192.168.0.10", hostNet, serving("monitoring/ne.monitoring.svc.cluster.local", 9100, 9100)),
			pService("monitoring", "ne", "10.96.9.1", ports(9100, 9100)),
			// 10.0.0.5: a WorkloadEntry, a plaintext pod, a pod in the mesh.
			pWorkload("demo", "vm", "10.0.0.5", entry),
			pWorkload("demo", "old", "10.0.0.5", plain),
			pWorkload("demo", "new", "10.0.0.5"),
			// 10.0.0.6: two pods alike: the lower uid.
			pWorkload("demo", "b", "10.0.0.6"),
			pWorkload("demo", "a", "10.0.0.6"),
			// 10.0.0.7: a WorkloadEntry in the mesh, a plaintext pod.
			pWorkload("demo", "vm2", "10.0.0.7", entry),
			pWorkload("demo", "plainpod", "10.0.0.7", plain),
		))
		if w, ok := s.WorkloadByIP(mustIP("192.168.0.10")); ok {
			t.Fatalf("the node's address finds %s", w.UID)
		}
		ne, _ := s.ServiceByVIP(mustIP("10.96.9.1"))
		if got := endpoints(s.Endpoints(ne, 9100)); got != "node-exporter:9100" {
			t.Fatalf("a host-network pod still serves its service: %q", got)
		}
		for ip, want := range map[string]string{"10.0.0.5": "new", "10.0.0.6": "a", "10.0.0.7": "plainpod"} {
			if w, _ := s.WorkloadByIP(mustIP(ip)); w == nil || w.Name != want {
				t.Fatalf("%s: %v, want %s", ip, w, want)
			}
		}
		// The preferred one goes: the next one takes the address.
		mustApply(t, s, nil, "Kubernetes//Pod/demo/new")
		if w, _ := s.WorkloadByIP(mustIP("10.0.0.5")); w == nil || w.Name != "old" {
			t.Fatalf("after removal: %v", w)
		}
	}
}

func TestPolicySelectionScopes(t *testing.T) {
	s := New()
	if err := s.ApplyAuthorizations([]Resource[*securitypb.Authorization]{
		pPolicy("istio-system", "global-deny", securitypb.Scope_GLOBAL, securitypb.Action_DENY),
		pPolicy("istio-system", "mesh-selected", securitypb.Scope_WORKLOAD_SELECTOR, securitypb.Action_ALLOW),
		pPolicy("demo", "ns-allow", securitypb.Scope_NAMESPACE, securitypb.Action_ALLOW),
		pPolicy("other", "ns-allow", securitypb.Scope_NAMESPACE, securitypb.Action_ALLOW),
		pPolicy("demo", "selected", securitypb.Scope_WORKLOAD_SELECTOR, securitypb.Action_ALLOW),
		pPolicy("demo", "unlisted", securitypb.Scope_WORKLOAD_SELECTOR, securitypb.Action_DENY),
	}, nil); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, addrs(
		pWorkload("demo", "a", "10.0.0.1", listing("demo/selected", "istio-system/mesh-selected", "demo/not-held", "demo/selected", "demo/ns-allow")),
		pWorkload("demo", "b", "10.0.0.2"),
		pWorkload("other", "c", "10.0.0.3", listing("demo/selected")),
	))
	for ip, want := range map[string][]string{
		"10.0.0.1": {"demo/ns-allow", "demo/selected", "istio-system/global-deny", "istio-system/mesh-selected"},
		"10.0.0.2": {"demo/ns-allow", "istio-system/global-deny"},
		// A workload may list a policy of another namespace (a mesh-wide
		// selector policy lives in the root namespace); xds decides.
		"10.0.0.3": {"demo/selected", "istio-system/global-deny", "other/ns-allow"},
	} {
		w, _ := s.WorkloadByIP(mustIP(ip))
		if got := policyKeys(s.Policies(w)); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", ip, got, want)
		}
	}
	// Each applicable policy once, in a stable order (the first matching
	// policy is the one a decision names): GLOBAL, NAMESPACE, listed,
	// each by key.
	a, _ := s.WorkloadByIP(mustIP("10.0.0.1"))
	var order []string
	for _, p := range s.Policies(a) {
		order = append(order, p.Key())
	}
	if want := []string{"istio-system/global-deny", "demo/ns-allow", "demo/selected", "istio-system/mesh-selected"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	// A policy update reaches the next lookup, the workload unchanged.
	if err := s.ApplyAuthorizations(nil, []string{"demo/selected"}); err != nil {
		t.Fatal(err)
	}
	w, _ := s.WorkloadByIP(mustIP("10.0.0.1"))
	if got := policyKeys(s.Policies(w)); slices.Contains(got, "demo/selected") {
		t.Errorf("removed policy still selected: %v", got)
	}
}

// Versions is what the client hands to xds as initial_resource_versions:
// every name held with its version, per type, as a copy.
func TestVersionsForResume(t *testing.T) {
	s := New()
	if v := s.Versions(true); v == nil || len(v) != 0 {
		t.Fatalf("empty store: %v", v)
	}
	mustApply(t, s, addrs(
		versioned(pWorkload("demo", "a", "10.0.0.1"), "wa"),
		versioned(pService("demo", "echo", "10.96.0.10"), "se"),
	))
	if err := s.ApplyAuthorizations([]Resource[*securitypb.Authorization]{
		versioned(pPolicy("demo", "p", securitypb.Scope_NAMESPACE, securitypb.Action_ALLOW), "pa"),
	}, nil); err != nil {
		t.Fatal(err)
	}
	addrsV, authzV := s.Versions(true), s.Versions(false)
	if !maps.Equal(addrsV, map[string]string{"Kubernetes//Pod/demo/a": "wa", echoKey: "se"}) {
		t.Errorf("address versions %v", addrsV)
	}
	if !maps.Equal(authzV, map[string]string{"demo/p": "pa"}) {
		t.Errorf("authorization versions %v", authzV)
	}
	addrsV["Kubernetes//Pod/demo/a"] = "mutated"
	delete(authzV, "demo/p")
	if s.Versions(true)["Kubernetes//Pod/demo/a"] != "wa" || len(s.Versions(false)) != 1 {
		t.Error("Versions hands out the store's own map")
	}
}

// Changed is closed by every applied response, of either type, and a
// fresh channel is handed out after.
func TestChangedOnEachUpdate(t *testing.T) {
	s := New()
	c0 := s.Changed()
	if closed(c0) {
		t.Fatal("closed before any update")
	}
	if s.Changed() != c0 {
		t.Fatal("two channels for one state")
	}
	mustApply(t, s, addrs(pWorkload("demo", "a", "10.0.0.1")))
	if !closed(c0) {
		t.Fatal("not closed by an address update")
	}
	c1 := s.Changed()
	if closed(c1) {
		t.Fatal("the next channel is closed already")
	}
	if err := s.ApplyAuthorizations([]Resource[*securitypb.Authorization]{pPolicy("demo", "p", securitypb.Scope_NAMESPACE, securitypb.Action_ALLOW)}, nil); err != nil {
		t.Fatal(err)
	}
	if !closed(c1) {
		t.Fatal("not closed by an authorization update")
	}
	c2 := s.Changed()
	mustApply(t, s, nil, "Kubernetes//Pod/demo/a")
	if !closed(c2) {
		t.Fatal("not closed by a removal")
	}

	// A waiter that took the channel before an update sees the update's
	// state when woken.
	c3 := s.Changed()
	woke := make(chan bool)
	go func() {
		<-c3
		_, ok := s.WorkloadByIP(mustIP("10.0.0.9"))
		woke <- ok
	}()
	mustApply(t, s, addrs(pWorkload("demo", "z", "10.0.0.9")))
	if !<-woke {
		t.Fatal("woken before the update was visible")
	}
}

// Readers run against writers of both types; every snapshot a reader sees
// is whole (run with -race).
func TestConcurrentReadersDuringWriters(t *testing.T) {
	s := New()
	const rounds = 300
	var writers sync.WaitGroup
	done := make(chan struct{})
	writers.Add(2)
	go func() {
		defer writers.Done()
		for i := range rounds {
			// Each response moves the pair (workload, service) together.
			n := i % 8
			ip := fmt.Sprintf("10.0.1.%d", n)
			vip := fmt.Sprintf("10.96.1.%d", n)
			key := fmt.Sprintf("demo/s%d.demo.svc.cluster.local", n)
			opts := []pwOpt{serving(key, 80, 8080)}
			if i%3 == 0 {
				opts = append(opts, unhealthy)
			}
			err := s.ApplyAddresses(addrs(
				versioned(pWorkload("demo", fmt.Sprintf("w%d", n), ip, opts...), fmt.Sprint(i)),
				versioned(pService("demo", fmt.Sprintf("s%d", n), vip, ports(80, 0)), fmt.Sprint(i)),
			), []string{fmt.Sprintf("Kubernetes//Pod/demo/w%d", (n+4)%8), fmt.Sprintf("demo/s%d.demo.svc.cluster.local", (n+4)%8)})
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer writers.Done()
		for i := range rounds {
			scope := securitypb.Scope_NAMESPACE
			if i%2 == 0 {
				scope = securitypb.Scope_GLOBAL
			}
			if err := s.ApplyAuthorizations([]Resource[*securitypb.Authorization]{
				versioned(pPolicy("demo", fmt.Sprintf("p%d", i%5), scope, securitypb.Action_ALLOW), fmt.Sprint(i)),
			}, []string{fmt.Sprintf("demo/p%d", (i+2)%5)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() { writers.Wait(); close(done) }()

	var readers sync.WaitGroup
	for r := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				n := (i + r) % 8
				if w, ok := s.WorkloadByIP(mustIP(fmt.Sprintf("10.0.1.%d", n))); ok {
					if w.Name != fmt.Sprintf("w%d", n) {
						t.Errorf("torn workload %+v", w)
						return
					}
					_ = s.Policies(w)
				}
				if svc, ok := s.ServiceByVIP(mustIP(fmt.Sprintf("10.96.1.%d", n))); ok {
					for _, ep := range s.Endpoints(svc, 80) {
						if ep.Port != 8080 || !ep.Workload.Healthy {
							t.Errorf("endpoint %+v", ep)
							return
						}
					}
				}
				// One snapshot is consistent in itself: its indexes agree
				// with its resources.
				cur := s.cur.Load()
				for ip, w := range cur.byIP {
					if cur.workloads[w.UID] != w || !slices.Contains(w.Addrs, ip) {
						t.Errorf("index byIP disagrees at %v", ip)
						return
					}
				}
				for key, ws := range cur.endpoints {
					for _, w := range ws {
						if cur.workloads[w.UID] != w || w.Services[key] == nil {
							t.Errorf("index endpoints disagrees at %s", key)
							return
						}
					}
				}
				if len(cur.addrVersions) != len(cur.workloads)+len(cur.services) || len(cur.authzVersions) != len(cur.policies) {
					t.Errorf("versions disagree with resources")
					return
				}
				_ = s.Versions(i%2 == 0)
				_ = s.Counts()
				if i%64 == 0 {
					_ = s.Dump()
				}
			}
		}()
	}
	readers.Wait()
}
