package mesh

import (
	"net/netip"
	"strings"
	"testing"

	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
)

func ip(s string) []byte { return netip.MustParseAddr(s).AsSlice() }

func wl(uid, ns, name, addr string, healthy bool, services map[string]*workloadpb.PortList, policies ...string) Resource[*workloadpb.Address] {
	st := workloadpb.WorkloadStatus_HEALTHY
	if !healthy {
		st = workloadpb.WorkloadStatus_UNHEALTHY
	}
	return Resource[*workloadpb.Address]{Name: uid, Version: "v1", Value: &workloadpb.Address{Type: &workloadpb.Address_Workload{Workload: &workloadpb.Workload{
		Uid: uid, Name: name, Namespace: ns, Addresses: [][]byte{ip(addr)}, ServiceAccount: "sa-" + name,
		TunnelProtocol: workloadpb.TunnelProtocol_HBONE, Status: st, Services: services, AuthorizationPolicies: policies,
	}}}}
}

func svc(ns, host, vip string, ports ...*workloadpb.Port) Resource[*workloadpb.Address] {
	return Resource[*workloadpb.Address]{Name: ns + "/" + host, Version: "v1", Value: &workloadpb.Address{Type: &workloadpb.Address_Service{Service: &workloadpb.Service{
		Name: strings.Split(host, ".")[0], Namespace: ns, Hostname: host,
		Addresses: []*workloadpb.NetworkAddress{{Address: ip(vip)}}, Ports: ports,
	}}}}
}

func TestLookupsAndEndpoints(t *testing.T) {
	s := New()
	key := "demo/echo.demo.svc.cluster.local"
	ports := map[string]*workloadpb.PortList{key: {Ports: []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}, {ServicePort: 90}}}}
	changed := s.Changed()
	err := s.ApplyAddresses([]Resource[*workloadpb.Address]{
		wl("K//Pod/demo/a", "demo", "a", "10.0.0.1", true, ports),
		wl("K//Pod/demo/b", "demo", "b", "10.0.0.2", false, ports),
		svc("demo", "echo.demo.svc.cluster.local", "10.96.0.10", &workloadpb.Port{ServicePort: 80, TargetPort: 8080}),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by an update")
	}
	w, ok := s.WorkloadByIP(netip.MustParseAddr("10.0.0.1"))
	if !ok || w.UID != "K//Pod/demo/a" || !w.HBONE || w.Identity() != "spiffe://cluster.local/ns/demo/sa/sa-a" {
		t.Fatalf("workload %+v", w)
	}
	sv, ok := s.ServiceByVIP(netip.MustParseAddr("10.96.0.10"))
	if !ok || sv.Key != key {
		t.Fatalf("service %+v", sv)
	}
	eps := s.Endpoints(sv, 80)
	if len(eps) != 1 || eps[0].Workload.Name != "a" || eps[0].Port != 8080 {
		t.Fatalf("healthy endpoints of :80: %+v", eps)
	}
	if eps := s.Endpoints(sv, 90); len(eps) != 1 || eps[0].Port != 90 {
		t.Fatalf("target port 0 means the service port: %+v", eps)
	}
	if err := s.ApplyAddresses(nil, []string{"K//Pod/demo/a"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.WorkloadByIP(netip.MustParseAddr("10.0.0.1")); ok {
		t.Fatal("removed workload still found")
	}
	if v := s.Versions(true); v["K//Pod/demo/b"] != "v1" || len(v) != 2 {
		t.Fatalf("versions %v", v)
	}
}

// A response with one bad resource changes nothing and names it.
func TestBadResponseRejectedWhole(t *testing.T) {
	s := New()
	good := wl("K//Pod/demo/a", "demo", "a", "10.0.0.1", true, nil)
	if err := s.ApplyAddresses([]Resource[*workloadpb.Address]{good}, nil); err != nil {
		t.Fatal(err)
	}
	bad := wl("K//Pod/demo/x", "demo", "x", "10.0.0.9", true, nil)
	bad.Value.GetWorkload().Addresses = [][]byte{{1, 2, 3, 4, 5}}
	overflow := svc("demo", "big.demo.svc.cluster.local", "10.96.0.11", &workloadpb.Port{ServicePort: 70000})
	noUID := wl("", "demo", "y", "10.0.0.8", true, nil)
	for name, r := range map[string]Resource[*workloadpb.Address]{"address": bad, "port": overflow, "uid": noUID} {
		err := s.ApplyAddresses([]Resource[*workloadpb.Address]{wl("K//Pod/demo/c", "demo", "c", "10.0.0.3", true, nil), r}, []string{"K//Pod/demo/a"})
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if !strings.Contains(err.Error(), r.Name) && r.Name != "" {
			t.Errorf("%s: error %q does not name %q", name, err, r.Name)
		}
		if _, ok := s.WorkloadByIP(netip.MustParseAddr("10.0.0.1")); !ok {
			t.Fatalf("%s: the rejected response removed a workload", name)
		}
		if _, ok := s.WorkloadByIP(netip.MustParseAddr("10.0.0.3")); ok {
			t.Fatalf("%s: the rejected response added a workload", name)
		}
	}
	err := s.ApplyAuthorizations([]Resource[*securitypb.Authorization]{{Name: "demo/p", Value: &securitypb.Authorization{
		Name: "p", Namespace: "demo", Groups: []*securitypb.Group{{Rules: []*securitypb.Rules{{Matches: []*securitypb.Match{{DestinationPorts: []uint32{70000}}}}}}},
	}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "demo/p") {
		t.Fatalf("bad policy: %v", err)
	}
}

func TestPolicySelection(t *testing.T) {
	s := New()
	pol := func(ns, name string, scope securitypb.Scope) Resource[*securitypb.Authorization] {
		return Resource[*securitypb.Authorization]{Name: ns + "/" + name, Value: &securitypb.Authorization{Name: name, Namespace: ns, Scope: scope}}
	}
	if err := s.ApplyAuthorizations([]Resource[*securitypb.Authorization]{
		pol("istio-system", "global", securitypb.Scope_GLOBAL),
		pol("demo", "ns-wide", securitypb.Scope_NAMESPACE),
		pol("other", "ns-wide", securitypb.Scope_NAMESPACE),
		pol("demo", "selected", securitypb.Scope_WORKLOAD_SELECTOR),
		pol("demo", "not-selected", securitypb.Scope_WORKLOAD_SELECTOR),
	}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyAddresses([]Resource[*workloadpb.Address]{wl("K//Pod/demo/a", "demo", "a", "10.0.0.1", true, nil, "demo/selected")}, nil); err != nil {
		t.Fatal(err)
	}
	w, _ := s.WorkloadByUID("K//Pod/demo/a")
	var got []string
	for _, p := range s.Policies(w) {
		got = append(got, p.Key())
	}
	want := map[string]bool{"istio-system/global": true, "demo/ns-wide": true, "demo/selected": true}
	if len(got) != len(want) {
		t.Fatalf("policies %v", got)
	}
	for _, k := range got {
		if !want[k] {
			t.Fatalf("policies %v", got)
		}
	}
}

// Readers never block on or race with writers.
func TestConcurrentReaders(t *testing.T) {
	s := New()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			_ = s.ApplyAddresses([]Resource[*workloadpb.Address]{wl("K//Pod/demo/a", "demo", "a", "10.0.0.1", i%2 == 0, nil)}, nil)
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
			if w, ok := s.WorkloadByIP(netip.MustParseAddr("10.0.0.1")); ok && w.Name != "a" {
				t.Fatal("torn read")
			}
		}
	}
}
