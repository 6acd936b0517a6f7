package translate

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/ambitmesh/ambit/pkg/changefeed"
)

// syntheticMesh is a mesh shaped like CP-1b at any size: workloads pods in
// namespaces of 1,000 pods, 10 pods per Service (so 100,000 pods come
// with 10,000 Services), every namespace ambient with a selector and a
// namespace-wide AuthorizationPolicy, a STRICT mesh PeerAuthentication,
// and a service waypoint in every tenth namespace.
func syntheticMesh(workloads int) []changefeed.Object {
	const perNS, perService = 1000, 10
	var objs []changefeed.Object
	add := func(group, kind, ns, name, body string) {
		if ns == "" {
			ns = changefeed.ClusterScoped
		}
		objs = append(objs, changefeed.Object{
			Ref:   changefeed.ResourceRef{Group: group, Kind: kind, Namespace: ns, Name: name},
			Value: []byte(body),
		})
	}
	add("core", "Namespace", "", "istio-system", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"istio-system"}}`)
	add("security.istio.io", "PeerAuthentication", "istio-system", "default",
		`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"istio-system","creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"mtls":{"mode":"STRICT"}}}`)
	for n := 0; n*perNS < workloads; n++ {
		ns := fmt.Sprintf("tenant-%03d", n)
		wp := ""
		if n%10 == 0 {
			wp = `,"istio.io/use-waypoint":"waypoint"`
			add("gateway.networking.k8s.io", "Gateway", ns, "waypoint", fmt.Sprintf(
				`{"apiVersion":"gateway.networking.k8s.io/v1","kind":"Gateway","metadata":{"name":"waypoint","namespace":%q},"spec":{"gatewayClassName":"istio-waypoint","listeners":[{"name":"mesh","port":15008,"protocol":"HBONE"}]}}`, ns))
		}
		add("core", "Namespace", "", ns, fmt.Sprintf(
			`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q,"labels":{"istio.io/dataplane-mode":"ambient"%s}}}`, ns, wp))
		add("security.istio.io", "AuthorizationPolicy", ns, "allow-frontends", fmt.Sprintf(
			`{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"allow-frontends","namespace":%q},"spec":{"selector":{"matchLabels":{"tier":"backend"}},"rules":[{"from":[{"source":{"principals":["cluster.local/ns/%s/sa/frontend"]}}],"to":[{"operation":{"ports":["8080"]}}]}]}}`, ns, ns))
		add("security.istio.io", "AuthorizationPolicy", ns, "deny-blocked", fmt.Sprintf(
			`{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"deny-blocked","namespace":%q},"spec":{"action":"DENY","rules":[{"from":[{"source":{"namespaces":["blocked"]}}]}]}}`, ns))
		for s := 0; s < perNS/perService && n*perNS+s*perService < workloads; s++ {
			app := fmt.Sprintf("svc-%03d", s)
			add("core", "Service", ns, app, fmt.Sprintf(
				`{"apiVersion":"v1","kind":"Service","metadata":{"name":%q,"namespace":%q,"creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"selector":{"app":%q},"clusterIP":"10.%d.%d.%d","ports":[{"name":"http","port":80,"targetPort":"http","protocol":"TCP"},{"name":"grpc","port":9090,"targetPort":9090,"protocol":"TCP"}]}}`,
				app, ns, app, 96+n/256, n%256, s))
			for p := 0; p < perService; p++ {
				i := n*perNS + s*perService + p
				if i >= workloads {
					break
				}
				name, body := syntheticPod(ns, app, i, "v1")
				add("core", "Pod", ns, name, body)
			}
		}
	}
	return objs
}

// syntheticPod is a realistic stored pod; rev is its version label (the
// canonical revision), so two revisions differ in the workload's output.
func syntheticPod(ns, app string, i int, rev string) (string, string) {
	name := fmt.Sprintf("%s-5d8f7c9b4-%05d", app, i)
	tier := "frontend"
	if i%2 == 0 {
		tier = "backend"
	}
	return name, fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":%q,"uid":"0d9c%08d-aaaa-bbbb-cccc-000000000000","creationTimestamp":"2026-01-01T00:00:00Z",`+
		`"labels":{"app":%q,"version":%q,"tier":%q,"pod-template-hash":"5d8f7c9b4"},`+
		`"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"%s-5d8f7c9b4","uid":"r-%s","controller":true}]},`+
		`"spec":{"nodeName":"node-%03d","serviceAccountName":%q,"containers":[{"name":"app","image":"registry.example/app:1.0","ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"grpc","containerPort":9090,"protocol":"TCP"}]}]},`+
		`"status":{"phase":"Running","podIP":"10.%d.%d.%d","podIPs":[{"ip":"10.%d.%d.%d"}],"conditions":[{"type":"Ready","status":"True"}]}}`,
		name, ns, i, app, rev, tier, app, app, i%500, app,
		128+i/65536, (i/256)%256, i%256, 128+i/65536, (i/256)%256, i%256)
}

// BenchmarkTranslatePodChange measures one pod update end to end (decode,
// index, rebuild, marshal, hash, diff) at mesh sizes of 10k and 100k
// workloads.
func BenchmarkTranslatePodChange(b *testing.B) {
	for _, size := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("workloads=%d", size), func(b *testing.B) {
			objs := syntheticMesh(size)
			tr := New(Options{})
			tr.Reset(changefeed.Snapshot{Revision: 1, Objects: objs})
			// Alternate a spread of pods between two revisions.
			const k = 1024
			var events [2][k]changefeed.Event
			for j := range k {
				i := (j * 7919) % size
				ns := fmt.Sprintf("tenant-%03d", i/1000)
				app := fmt.Sprintf("svc-%03d", (i%1000)/10)
				for v, rev := range []string{"v2", "v1"} {
					name, body := syntheticPod(ns, app, i, rev)
					events[v][j] = changefeed.Event{Type: changefeed.EventPut, Object: changefeed.Object{
						Ref: changefeed.ResourceRef{Group: "core", Kind: "Pod", Namespace: ns, Name: name}, Value: []byte(body),
					}}
				}
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				ev := events[(n/k)%2][n%k]
				ev.Position.Revision = int64(n + 2)
				if d := tr.Apply(ev); len(d) != 1 || len(d[0].Upserts) != 1 {
					b.Fatalf("change %d produced %v", n, d)
				}
				n++
			}
		})
	}
}

// TestIndexMemoryPerWorkload reports what the translator keeps per
// workload (index plus the versions of what it sent) at 10k and 100k
// workloads, and holds it to a budget that leaves CP-1b room on a small
// machine.
func TestIndexMemoryPerWorkload(t *testing.T) {
	sizes := []int{10_000, 100_000}
	if testing.Short() || raceEnabled {
		sizes = sizes[:1]
	}
	for _, size := range sizes {
		objs := syntheticMesh(size)
		before := heapInUse()
		tr := New(Options{})
		tr.Reset(changefeed.Snapshot{Revision: 1, Objects: objs})
		after := heapInUse()
		st := tr.Index().Stats()
		perWorkload := float64(after-before) / float64(st.Workloads)
		t.Logf("workloads=%d services=%d: %.0f bytes/workload (%.1f MiB total, index + sent versions)",
			st.Workloads, st.Services, perWorkload, float64(after-before)/(1<<20))
		if !raceEnabled && perWorkload > 2048 {
			t.Errorf("%.0f bytes per workload, budget 2048", perWorkload)
		}
		runtime.KeepAlive(tr)
		runtime.KeepAlive(objs)
	}
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestSyntheticMeshTranslates keeps the benchmark's input honest: every
// pod becomes a workload with its service, waypointed services exist.
func TestSyntheticMeshTranslates(t *testing.T) {
	tr := New(Options{})
	deltas := tr.Reset(changefeed.Snapshot{Revision: 1, Objects: syntheticMesh(2000)})
	if tr.Invalid() != 0 {
		t.Fatalf("%d invalid objects", tr.Invalid())
	}
	st := tr.Index().Stats()
	if st.Workloads != 2000 || st.Services != 200 {
		t.Fatalf("stats %+v", st)
	}
	addrs := 0
	for _, d := range deltas {
		if d.TypeURL == AddressTypeURL {
			addrs = len(d.Upserts)
			for _, r := range d.Upserts {
				if strings.Contains(r.Name, "//Pod/") && len(r.Aliases) != 1 {
					t.Fatalf("%s has aliases %v", r.Name, r.Aliases)
				}
			}
		}
	}
	if addrs != 2200 {
		t.Fatalf("%d addresses, want 2200", addrs)
	}
}
