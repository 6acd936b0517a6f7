package snapshot

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPmapMatchesMap drives the trie and a Go map with the same random
// operations and checks content, order, sharing and diffs after each step.
func TestPmapMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var m pmap[int]
	want := map[string]int{}
	for step := 0; step < 20000; step++ {
		key := fmt.Sprintf("k%d", rng.IntN(3000))
		prev, prevWant := m, maps(want)
		if rng.IntN(3) == 0 {
			m = m.del(key)
			delete(want, key)
		} else {
			v := rng.IntN(4)
			m = m.set(key, v)
			want[key] = v
		}
		if m.Len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, m.Len(), len(want))
		}
		if step%500 == 0 {
			checkContent(t, m, want)
		}
		// The diff against the previous version names exactly the change.
		var got []string
		m.diff(prev, func(k string, o int, hadOld bool, n int, hasNew bool) {
			if pv, ok := prevWant[k]; ok != hadOld || (ok && pv != o) {
				t.Fatalf("step %d: diff old side of %s wrong", step, k)
			}
			if nv, ok := want[k]; ok != hasNew || (ok && nv != n) {
				t.Fatalf("step %d: diff new side of %s wrong", step, k)
			}
			got = append(got, k)
		})
		pv, hadPrev := prevWant[key]
		nv, hasNow := want[key]
		changed := hadPrev != hasNow || pv != nv
		if changed != (len(got) == 1) || len(got) > 1 {
			t.Fatalf("step %d: diff %v for one change of %s (changed=%v)", step, got, key, changed)
		}
		if !changed && prev.root != m.root {
			t.Fatalf("step %d: no-op update copied the trie", step)
		}
	}
	checkContent(t, m, want)
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func checkContent(t *testing.T, m pmap[int], want map[string]int) {
	t.Helper()
	for k, v := range want {
		if got, ok := m.get(k); !ok || got != v {
			t.Fatalf("get(%s) = %d,%v want %d", k, got, ok, v)
		}
	}
	if _, ok := m.get("absent"); ok {
		t.Fatal("absent key found")
	}
	var keys []string
	var last uint64
	m.each(func(k string, _ int) bool {
		h := hashKey(k)
		if len(keys) > 0 && h < last {
			t.Fatalf("each not in hash order at %s", k)
		}
		last = h
		keys = append(keys, k)
		return true
	})
	if len(keys) != len(want) {
		t.Fatalf("each visited %d, want %d", len(keys), len(want))
	}
}

// TestPmapDiffBetweenDistantVersions compares versions many updates apart,
// including deletions that fold subtrees back into leaves.
func TestPmapDiffBetweenDistantVersions(t *testing.T) {
	var a pmap[int]
	for i := range 5000 {
		a = a.set(fmt.Sprintf("name-%d", i), i)
	}
	b := a
	wantChanged := map[string]bool{}
	for i := 0; i < 5000; i += 7 {
		k := fmt.Sprintf("name-%d", i)
		b = b.del(k)
		wantChanged[k] = true
	}
	for i := 3; i < 5000; i += 11 {
		k := fmt.Sprintf("name-%d", i)
		b = b.set(k, -i)
		wantChanged[k] = true
	}
	for i := 5000; i < 5100; i++ {
		k := fmt.Sprintf("name-%d", i)
		b = b.set(k, i)
		wantChanged[k] = true
	}
	var got []string
	b.diff(a, func(k string, _ int, _ bool, _ int, _ bool) { got = append(got, k) })
	if len(got) != len(wantChanged) {
		t.Fatalf("diff found %d changes, want %d", len(got), len(wantChanged))
	}
	for _, k := range got {
		if !wantChanged[k] {
			t.Fatalf("diff reported unchanged %s", k)
		}
	}
	// Deleting everything leaves an empty trie.
	c := b
	b.each(func(k string, _ int) bool { c = c.del(k); return true })
	if c.Len() != 0 || c.root != nil {
		t.Fatalf("empty trie has len %d root %v", c.Len(), c.root)
	}
}

func TestHashCollisionsShareALeaf(t *testing.T) {
	// Force collisions through the leaf code path directly.
	l := &pleaf[int]{hash: 42, kvs: []pkv[int]{{"a", 1}}}
	n := singleLeafNode(l, 0)
	n2, added, changed := n.set(42, 0, "b", 2)
	if !added || !changed || len(n2.slots[0].leaf.kvs) != 2 {
		t.Fatalf("collision insert: %+v", n2.slots[0].leaf)
	}
	n3, removed := n2.del(42, 0, "a")
	if !removed || !slices.Equal([]pkv[int]{{"b", 2}}, n3.slots[0].leaf.kvs) {
		t.Fatalf("collision delete: %+v", n3.slots[0].leaf)
	}
}
