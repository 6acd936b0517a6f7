package mesh

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
)

// A synthetic mesh of the shape DESIGN §9 sizes (CP-1b: 100,000 workloads,
// 10,000 services): n workloads over 100 namespaces, n/10 services, n/100
// policies; every workload has one IP, serves two services of its
// namespace and lists one policy. The resources go through the wire form
// (marshal, unmarshal) as the xds client hands them over, so every string
// is its own allocation, as in production.

const synthNamespaces = 100

func synthNS(i int) string { return fmt.Sprintf("ns-%02d", i%synthNamespaces) }

// synthPolicies is the number of policies per namespace: n/100 in all.
func synthPolicies(nsvc int) int { return max(nsvc/synthNamespaces/10, 1) }

func synthServiceKey(j int) string {
	return fmt.Sprintf("%s/svc-%d.%s.svc.cluster.local", synthNS(j), j, synthNS(j))
}

func synthWorkload(i, nsvc int, version string) *workloadpb.Address {
	s1 := i % nsvc
	s2 := (i + synthNamespaces) % nsvc // same namespace as s1
	ns := synthNS(s1)
	app := fmt.Sprintf("app-%d", s1)
	name := fmt.Sprintf("%s-7d4b9c5f6-%05x", app, i)
	ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return &workloadpb.Address{Type: &workloadpb.Address_Workload{Workload: &workloadpb.Workload{
		Uid: "Kubernetes//Pod/" + ns + "/" + name, Name: name, Namespace: ns, ServiceAccount: app,
		TrustDomain: "cluster.local", ClusterId: "Kubernetes", Node: fmt.Sprintf("node-%03d", i%500),
		CanonicalName: app, CanonicalRevision: "v" + version[:1], WorkloadName: app, WorkloadType: workloadpb.WorkloadType_POD,
		TunnelProtocol: workloadpb.TunnelProtocol_HBONE, Addresses: [][]byte{ip.AsSlice()},
		Services: map[string]*workloadpb.PortList{
			synthServiceKey(s1): {Ports: []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}}},
			synthServiceKey(s2): {Ports: []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}}},
		},
		AuthorizationPolicies: []string{fmt.Sprintf("%s/policy-%d", ns, (s1/synthNamespaces)%synthPolicies(nsvc))},
	}}}
}

func synthService(j int) *workloadpb.Address {
	ns := synthNS(j)
	return &workloadpb.Address{Type: &workloadpb.Address_Service{Service: &workloadpb.Service{
		Name: fmt.Sprintf("svc-%d", j), Namespace: ns, Hostname: fmt.Sprintf("svc-%d.%s.svc.cluster.local", j, ns),
		Addresses: []*workloadpb.NetworkAddress{{Address: netip.AddrFrom4([4]byte{172, 20, byte(j >> 8), byte(j)}).AsSlice()}},
		Ports:     []*workloadpb.Port{{ServicePort: 80, TargetPort: 8080}},
	}}}
}

// wire returns m as the client would: unmarshalled from its bytes.
func wire[T proto.Message](tb testing.TB, m T, fresh T) T {
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	if err := proto.Unmarshal(b, fresh); err != nil {
		tb.Fatal(err)
	}
	return fresh
}

func synthVersion(i int) string { return fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15) }

// buildSynth fills s with the services and policies of a mesh of n
// workloads, then the workloads, in responses of batch resources.
func buildSynth(tb testing.TB, s *Store, n, batch int, afterServices func()) {
	nsvc := max(n/10, synthNamespaces)
	var svcs []Resource[*workloadpb.Address]
	for j := range nsvc {
		svcs = append(svcs, Resource[*workloadpb.Address]{Name: strings.Clone(synthServiceKey(j)), Version: synthVersion(j),
			Value: wire(tb, synthService(j), &workloadpb.Address{})})
	}
	if err := s.ApplyAddresses(svcs, nil); err != nil {
		tb.Fatal(err)
	}
	var pols []Resource[*securitypb.Authorization]
	for ni := range synthNamespaces {
		ns := synthNS(ni)
		for k := range synthPolicies(nsvc) {
			name := fmt.Sprintf("policy-%d", k)
			pols = append(pols, Resource[*securitypb.Authorization]{Name: ns + "/" + name, Version: synthVersion(k),
				Value: wire(tb, &securitypb.Authorization{Name: name, Namespace: ns, Scope: securitypb.Scope_WORKLOAD_SELECTOR,
					Groups: []*securitypb.Group{{Rules: []*securitypb.Rules{{Matches: []*securitypb.Match{{
						Principals: []*securitypb.StringMatch{{MatchType: &securitypb.StringMatch_Prefix{Prefix: "cluster.local/ns/" + ns + "/"}}},
					}}}}}}}, &securitypb.Authorization{})})
		}
	}
	if err := s.ApplyAuthorizations(pols, nil); err != nil {
		tb.Fatal(err)
	}
	svcs, pols = nil, nil
	if afterServices != nil {
		afterServices()
	}
	for start := 0; start < n; start += batch {
		ups := make([]Resource[*workloadpb.Address], 0, batch)
		for i := start; i < min(start+batch, n); i++ {
			a := wire(tb, synthWorkload(i, nsvc, synthVersion(i)), &workloadpb.Address{})
			ups = append(ups, Resource[*workloadpb.Address]{Name: strings.Clone(a.GetWorkload().GetUid()), Version: synthVersion(i), Value: a})
		}
		if err := s.ApplyAddresses(ups, nil); err != nil {
			tb.Fatal(err)
		}
	}
}

func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMemoryPerWorkload reports the heap the view holds per workload
// (DESIGN DP-5: ≤ 1 KB per workload). It allocates a few hundred MB, so it
// runs only when asked:
//
//	MESH_MEMORY=1 go test ./internal/mesh -run TestMemoryPerWorkload -v
func TestMemoryPerWorkload(t *testing.T) {
	if os.Getenv("MESH_MEMORY") == "" {
		t.Skip("set MESH_MEMORY=1 to measure the heap per workload")
	}
	const target = 1024
	for _, n := range []int{10_000, 50_000, 100_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			base := heapAlloc()
			s := New()
			var withServices uint64
			buildSynth(t, s, n, 5000, func() { withServices = heapAlloc() })
			if c := s.Counts(); c.Workloads != n {
				t.Fatalf("counts %+v", c)
			}
			all := heapAlloc()
			perWorkload := float64(all-withServices) / float64(n)
			perWorkloadAll := float64(all-base) / float64(n)

			// What the decoded workloads alone take, without the view's maps
			// and indexes.
			nsvc := max(n/10, synthNamespaces)
			before := heapAlloc()
			objs := make([]*Workload, 0, n)
			for i := range n {
				w, err := decodeWorkload(wire(t, synthWorkload(i, nsvc, synthVersion(i)), &workloadpb.Address{}).GetWorkload())
				if err != nil {
					t.Fatal(err)
				}
				objs = append(objs, w)
			}
			objects := float64(heapAlloc()-before) / float64(n)
			runtime.KeepAlive(objs)
			runtime.KeepAlive(s)

			t.Logf("%6d workloads, %5d services: %4.0f B/workload held for the workloads (%4.0f B decoded objects, %4.0f B maps, indexes, names, versions); %4.0f B/workload with services and policies",
				n, nsvc, perWorkload, objects, perWorkload-objects, perWorkloadAll)
			if perWorkload > target {
				t.Errorf("%.0f B per workload, above the DP-5 target of %d B", perWorkload, target)
			}
		})
	}
}

// BenchmarkApplyOneWorkload is the cost of one xds response that changes
// one workload, in a view of n workloads:
//
//	go test ./internal/mesh -run '^$' -bench ApplyOneWorkload -benchmem
func BenchmarkApplyOneWorkload(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("workloads=%d", n), func(b *testing.B) {
			s := New()
			buildSynth(b, s, n, 10_000, nil)
			nsvc := max(n/10, synthNamespaces)
			var ups [2][]Resource[*workloadpb.Address]
			for v := range ups {
				a := synthWorkload(n/2, nsvc, synthVersion(v))
				a.GetWorkload().Status = workloadpb.WorkloadStatus(v) // flips health
				ups[v] = []Resource[*workloadpb.Address]{{Name: a.GetWorkload().GetUid(), Version: synthVersion(v), Value: a}}
			}
			i := 0
			for b.Loop() {
				if err := s.ApplyAddresses(ups[i%2], nil); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkLookups is the per-connection cost at 100,000 workloads: the
// destination service, its endpoints, the workload and its policies.
func BenchmarkLookups(b *testing.B) {
	s := New()
	n := 100_000
	buildSynth(b, s, n, 10_000, nil)
	vip := netip.AddrFrom4([4]byte{172, 20, 0, 7})
	wip := netip.AddrFrom4([4]byte{10, 0, 1, 2})
	for b.Loop() {
		svc, ok := s.ServiceByVIP(vip)
		if !ok {
			b.Fatal("no service")
		}
		if len(s.Endpoints(svc, 80)) == 0 {
			b.Fatal("no endpoints")
		}
		w, ok := s.WorkloadByIP(wip)
		if !ok {
			b.Fatal("no workload")
		}
		_ = s.Policies(w)
	}
}
