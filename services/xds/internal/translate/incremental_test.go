package translate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

// state is what a client holding every resource would have.
type state map[string]map[string]*snapshot.Resource

func (s state) apply(t testing.TB, deltas []snapshot.Delta) {
	t.Helper()
	for _, d := range deltas {
		m := s[d.TypeURL]
		if m == nil {
			m = map[string]*snapshot.Resource{}
			s[d.TypeURL] = m
		}
		for _, r := range d.Upserts {
			if old, ok := m[r.Name]; ok && old.Version == r.Version {
				t.Errorf("%s re-sent unchanged (version %s)", r.Name, r.Version)
			}
			m[r.Name] = r
		}
		for _, n := range d.Removals {
			if _, ok := m[n]; !ok {
				t.Errorf("removal of %s, which the client never had", n)
			}
			delete(m, n)
		}
	}
}

// diff reports how s differs from want (names, versions, bytes, aliases).
func (s state) diff(want state) []string {
	var out []string
	for _, typ := range []string{AddressTypeURL, AuthorizationTypeURL} {
		got, exp := s[typ], want[typ]
		for n, w := range exp {
			g, ok := got[n]
			switch {
			case !ok:
				out = append(out, "missing "+n)
			case g.Version != w.Version || !proto.Equal(g.Body, w.Body):
				out = append(out, fmt.Sprintf("stale %s: version %s, want %s", n, g.Version, w.Version))
			case !slices.Equal(g.Aliases, w.Aliases):
				out = append(out, fmt.Sprintf("aliases of %s: %v, want %v", n, g.Aliases, w.Aliases))
			}
		}
		for n := range got {
			if _, ok := exp[n]; !ok {
				out = append(out, "extra "+n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// allCaseObjects is every golden input, plus mutated variants, as a pool
// of object versions.
func allCaseObjects(t testing.TB) []changefeed.Object {
	cases, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pool []changefeed.Object
	for _, c := range cases {
		for _, o := range loadObjects(t, c) {
			pool = append(pool, o)
			pool = append(pool, variants(t, o)...)
		}
	}
	return pool
}

// variants mutates an object the ways that move it between selectors,
// modes and waypoints.
func variants(t testing.TB, o changefeed.Object) []changefeed.Object {
	mutations := []func(m map[string]any){
		func(m map[string]any) { meta(m)["labels"] = map[string]any{} },
		func(m map[string]any) { labels(m)["istio.io/use-waypoint"] = "waypoint" },
		func(m map[string]any) { labels(m)["istio.io/dataplane-mode"] = "none" },
		func(m map[string]any) { labels(m)["istio.io/dataplane-mode"] = "ambient" },
		func(m map[string]any) { labels(m)["app"] = "api" },
		func(m map[string]any) { labels(m)["topology.istio.io/network"] = "net-2" },
		func(m map[string]any) {
			spec := obj(m, "spec")
			switch o.Ref.Kind {
			case "Service":
				spec["selector"] = map[string]any{"app": "api"}
			case "ServiceEntry":
				spec["workloadSelector"] = map[string]any{"labels": map[string]any{"app": "api"}}
			case "AuthorizationPolicy", "PeerAuthentication":
				spec["selector"] = map[string]any{"matchLabels": map[string]any{"app": "api"}}
			case "Pod":
				delete(obj(m, "status"), "podIPs")
				delete(obj(m, "status"), "podIP")
			case "Gateway":
				delete(m, "status")
			}
		},
		func(m map[string]any) {
			spec := obj(m, "spec")
			switch o.Ref.Kind {
			case "PeerAuthentication":
				spec["mtls"] = map[string]any{"mode": "STRICT"}
			case "AuthorizationPolicy":
				spec["action"] = "DENY"
			case "Service", "ServiceEntry":
				delete(spec, "ports")
			}
		},
	}
	var out []changefeed.Object
	for _, mut := range mutations {
		var m map[string]any
		if err := json.Unmarshal(o.Value, &m); err != nil {
			t.Fatal(err)
		}
		mut(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, changefeed.Object{Ref: o.Ref, Value: b})
	}
	return out
}

func obj(m map[string]any, key string) map[string]any {
	v, ok := m[key].(map[string]any)
	if !ok {
		v = map[string]any{}
		m[key] = v
	}
	return v
}

func meta(m map[string]any) map[string]any   { return obj(m, "metadata") }
func labels(m map[string]any) map[string]any { return obj(meta(m), "labels") }

// TestIncrementalEqualsFull walks random sequences of puts (new objects,
// other versions, unchanged re-puts) and deletes, and after every step
// checks that the resources a client got from Apply equal a fresh Reset of
// the same objects, and that the indexes agree.
func TestIncrementalEqualsFull(t *testing.T) {
	pool := allCaseObjects(t)
	steps := 1500
	if testing.Short() || raceEnabled {
		steps = 400
	}
	for seed := uint64(1); seed <= 2; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			current := map[changefeed.ResourceRef]changefeed.Object{}
			inc := New(Options{})
			client := state{}
			client.apply(t, inc.Reset(changefeed.Snapshot{Revision: 1}))
			for step := range steps {
				rev := int64(step + 2)
				ev := changefeed.Event{Type: changefeed.EventPut, Position: changefeed.Position{Revision: rev}}
				refs := mapKeys(current)
				unchanged := false
				switch r := rng.IntN(10); {
				case r < 2 && len(refs) > 0:
					ev.Type = changefeed.EventDelete
					ev.Object = current[refs[rng.IntN(len(refs))]]
					delete(current, ev.Object.Ref)
				case r < 3 && len(refs) > 0:
					ev.Object = current[refs[rng.IntN(len(refs))]]
					unchanged = true
				default:
					ev.Object = pool[rng.IntN(len(pool))]
					prev, ok := current[ev.Object.Ref]
					unchanged = ok && bytes.Equal(prev.Value, ev.Object.Value)
					current[ev.Object.Ref] = ev.Object
				}
				deltas := inc.Apply(ev)
				if unchanged && len(deltas) > 0 {
					t.Fatalf("step %d: re-put of unchanged %v emitted %d deltas", step, ev.Object.Ref, len(deltas))
				}
				client.apply(t, deltas)
				if inc.Revision() != rev {
					t.Fatalf("revision %d, want %d", inc.Revision(), rev)
				}

				full := New(Options{})
				want := state{}
				want.apply(t, full.Reset(snapshotOf(current, rev)))
				if d := client.diff(want); len(d) > 0 {
					t.Fatalf("step %d (%v %v): incremental differs from full:\n%v", step, ev.Type, ev.Object.Ref, d)
				}
				if !reflect.DeepEqual(inc.Index().Dump(), full.Index().Dump()) {
					t.Fatalf("step %d (%v %v): index differs from a fresh one", step, ev.Type, ev.Object.Ref)
				}
			}
		})
	}
}

func mapKeys(m map[changefeed.ResourceRef]changefeed.Object) []changefeed.ResourceRef {
	keys := make([]changefeed.ResourceRef, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b changefeed.ResourceRef) int {
		if a.Key() < b.Key() {
			return -1
		}
		if a.Key() > b.Key() {
			return 1
		}
		return 0
	})
	return keys
}

func snapshotOf(current map[changefeed.ResourceRef]changefeed.Object, rev int64) changefeed.Snapshot {
	snap := changefeed.Snapshot{Revision: rev}
	for _, k := range mapKeys(current) {
		snap.Objects = append(snap.Objects, current[k])
	}
	return snap
}

// TestResetAfterApplyIsFullState: a Reset after changes re-sends the whole
// state and removes what is gone.
func TestResetAfterApplyIsFullState(t *testing.T) {
	objs := loadObjects(t, "testdata/in/waypoints.yaml")
	tr := New(Options{})
	client := state{}
	client.apply(t, tr.Reset(changefeed.Snapshot{Revision: 1, Objects: objs}))
	// The re-list no longer has the namespace's pods.
	var kept []changefeed.Object
	for _, o := range objs {
		if o.Ref.Kind != "Pod" {
			kept = append(kept, o)
		}
	}
	fresh := state{}
	fresh.apply(t, New(Options{}).Reset(changefeed.Snapshot{Revision: 9, Objects: kept}))
	deltas := tr.Reset(changefeed.Snapshot{Revision: 9, Objects: kept})
	removed := 0
	for _, d := range deltas {
		removed += len(d.Removals)
		for _, n := range d.Removals {
			delete(client[d.TypeURL], n)
		}
		for _, r := range d.Upserts {
			client[d.TypeURL][r.Name] = r
		}
	}
	if d := client.diff(fresh); len(d) > 0 {
		t.Fatalf("state after Reset differs from its full state: %v", d)
	}
	if removed != 5 {
		t.Errorf("%d removals, want the 5 pods", removed)
	}
	if tr.Revision() != 9 {
		t.Fatalf("revision %d, want 9", tr.Revision())
	}
}
