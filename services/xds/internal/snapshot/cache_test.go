package snapshot_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

const typeA = "type.googleapis.com/test.A"

func res(name, version string, aliases ...string) *snapshot.Resource {
	body, _ := anypb.New(wrapperspb.String(name + "@" + version))
	return &snapshot.Resource{Name: name, Version: version, Body: body, Aliases: aliases}
}

func upsert(rs ...*snapshot.Resource) snapshot.Delta {
	return snapshot.Delta{TypeURL: typeA, Upserts: rs}
}

func remove(names ...string) snapshot.Delta {
	return snapshot.Delta{TypeURL: typeA, Removals: names}
}

func TestApply(t *testing.T) {
	c := snapshot.New(snapshot.Options{})
	s0 := c.Current()
	if s0.Generation() != 0 || s0.Len(typeA) != 0 {
		t.Fatalf("empty cache: gen %d len %d", s0.Generation(), s0.Len(typeA))
	}
	g1 := c.Apply(10, upsert(res("a", "1", "net/10.0.0.1"), res("b", "1")))
	s1 := c.Current()
	if g1 != 1 || s1.Revision() != 10 || s1.Len(typeA) != 2 {
		t.Fatalf("after apply: gen %d rev %d len %d", g1, s1.Revision(), s1.Len(typeA))
	}
	if r := s1.Resolve(typeA, "net/10.0.0.1"); r == nil || r.Name != "a" {
		t.Fatalf("resolve alias: %v", r)
	}

	// Same versions: nothing changes, not even the generation.
	if g := c.Apply(10, upsert(res("a", "1", "net/10.0.0.1"))); g != 1 {
		t.Fatalf("no-op apply bumped generation to %d", g)
	}
	// A new revision without content changes is a new snapshot with the
	// same content.
	g2 := c.Apply(11)
	s2 := c.Current()
	if g2 != 2 || s2.Revision() != 11 || s2.ChangedAt(typeA) != 1 || s2.ChangedKeys(s1, typeA) != nil {
		t.Fatalf("revision-only apply: gen %d rev %d changedAt %d", g2, s2.Revision(), s2.ChangedAt(typeA))
	}

	// Move the alias from a to c, remove b.
	c.Apply(12, remove("b"), upsert(res("a", "2"), res("c", "1", "net/10.0.0.1")))
	s3 := c.Current()
	if r := s3.Resolve(typeA, "net/10.0.0.1"); r == nil || r.Name != "c" {
		t.Fatalf("alias after move: %v", r)
	}
	if got, want := s3.ChangedKeys(s1, typeA), []string{"a", "b", "c", "net/10.0.0.1"}; !slices.Equal(got, want) {
		t.Fatalf("changed keys = %v, want %v", got, want)
	}
	// Older snapshots are untouched.
	if s1.Len(typeA) != 2 || s1.Get(typeA, "b") == nil || s1.Get(typeA, "a").Version != "1" {
		t.Fatal("old snapshot changed")
	}
}

func TestAliasOwnersAreOrderIndependent(t *testing.T) {
	for _, order := range [][]string{{"x", "y"}, {"y", "x"}} {
		c := snapshot.New(snapshot.Options{})
		for _, n := range order {
			c.Apply(1, upsert(res(n, "1", "ip")))
		}
		if r := c.Current().Resolve(typeA, "ip"); r.Name != "x" {
			t.Fatalf("order %v: ip resolves to %s", order, r.Name)
		}
		c.Apply(2, remove("x"))
		if r := c.Current().Resolve(typeA, "ip"); r == nil || r.Name != "y" {
			t.Fatalf("order %v: after removing x: %v", order, r)
		}
		c.Apply(3, remove("y"))
		if r := c.Current().Resolve(typeA, "ip"); r != nil {
			t.Fatalf("alias survived its owners: %v", r)
		}
	}
}

// TestChangedKeysFallsBackToDiff checks that a reader far behind the
// bounded changelog gets the same answer from the structural diff.
func TestChangedKeysFallsBackToDiff(t *testing.T) {
	tests := []struct {
		name string
		opts snapshot.Options
	}{
		{"changelog", snapshot.Options{}},
		{"few entries", snapshot.Options{MaxLogEntries: 3}},
		{"few keys", snapshot.Options{MaxLogKeys: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := snapshot.New(tt.opts)
			var rs []*snapshot.Resource
			for i := range 100 {
				rs = append(rs, res(fmt.Sprintf("r%03d", i), "1", fmt.Sprintf("ip%03d", i)))
			}
			c.Apply(1, upsert(rs...))
			base := c.Current()
			for i := range 10 {
				c.Apply(int64(2+i), upsert(res(fmt.Sprintf("r%03d", i*3), "2")))
			}
			c.Apply(20, remove("r099"))
			got := c.Current().ChangedKeys(base, typeA)
			var want []string
			for i := range 10 {
				want = append(want, fmt.Sprintf("r%03d", i*3), fmt.Sprintf("ip%03d", i*3))
			}
			want = append(want, "r099", "ip099")
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("changed keys:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestReplace(t *testing.T) {
	c := snapshot.New(snapshot.Options{})
	c.Apply(1, upsert(res("a", "1"), res("b", "1")), snapshot.Delta{TypeURL: "other", Upserts: []*snapshot.Resource{res("o", "1")}})
	before := c.Current()
	// Identical content: no change, no generation.
	if g := c.Replace(snapshot.Origin{}, 1, upsert(res("a", "1"), res("b", "1")), snapshot.Delta{TypeURL: "other", Upserts: []*snapshot.Resource{res("o", "1")}}); g != before.Generation() {
		t.Fatalf("identical replace bumped the generation to %d", g)
	}
	c.Replace(snapshot.Origin{}, 5, upsert(res("a", "1"), res("c", "1")))
	s := c.Current()
	if s.Len(typeA) != 2 || s.Get(typeA, "b") != nil || s.Get(typeA, "c") == nil || s.Len("other") != 0 {
		t.Fatalf("after replace: %d resources, other %d", s.Len(typeA), s.Len("other"))
	}
	if got := s.ChangedKeys(before, typeA); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("changed keys after replace: %v", got)
	}
}

func TestSubscribeCoalesces(t *testing.T) {
	c := snapshot.New(snapshot.Options{})
	ch, cancel := c.Subscribe()
	defer cancel()
	for i := range 5 {
		c.Apply(int64(i+1), upsert(res("a", fmt.Sprint(i))))
	}
	select {
	case <-ch:
	default:
		t.Fatal("no notification")
	}
	select {
	case <-ch:
		t.Fatal("notifications did not coalesce")
	default:
	}
	if c.Current().Generation() != 5 {
		t.Fatalf("generation %d", c.Current().Generation())
	}
}

func TestOrigins(t *testing.T) {
	c := snapshot.New(snapshot.Options{MaxOrigins: 2})
	t0 := time.Unix(100, 0)
	for i := range 3 {
		c.ApplyFrom(snapshot.Origin{At: t0.Add(time.Duration(i) * time.Second)}, int64(i+1), upsert(res("a", fmt.Sprint(i))))
	}
	earliest, _ := c.Current().OriginsSince(1, 8)
	if !earliest.Equal(t0.Add(time.Second)) {
		t.Fatalf("earliest since gen 1 = %v", earliest)
	}
}

// BenchmarkApplyOneChange measures one upsert into a type of 100k
// resources: it must not depend on the size of the type.
func BenchmarkApplyOneChange(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c := snapshot.New(snapshot.Options{})
			rs := make([]*snapshot.Resource, n)
			for i := range rs {
				rs[i] = res(fmt.Sprintf("cluster//Pod/ns/pod-%d", i), "1", fmt.Sprintf("net/10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
			}
			c.Apply(1, upsert(rs...))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r := rs[i%n]
				c.Apply(int64(i+2), upsert(&snapshot.Resource{Name: r.Name, Version: fmt.Sprint(i), Body: r.Body, Aliases: r.Aliases}))
			}
		})
	}
}
