package snapshot

import "math/bits"

// pmap is a persistent (immutable) hash array mapped trie from string keys
// to comparable values. Every update returns a new map that shares all
// untouched nodes with the old one, so an update copies one path of at
// most 13 small nodes instead of the whole map, and any number of
// snapshots can be kept at the cost of what differs between them.
//
// Keys are placed by a 64-bit hash, five bits per level from the most
// significant end, so a traversal visits keys in ascending (hash, key)
// order: deterministic on every replica (the hash is fixed, not seeded per
// process). Two maps are compared by walking both and skipping every
// subtree they share by pointer, which makes a diff cost proportional to
// what changed.
type pmap[V comparable] struct {
	root *pnode[V]
	n    int
}

type pnode[V comparable] struct {
	bitmap uint32
	slots  []pslot[V] // one per set bit, in bit order
}

// pslot holds either a child node or a leaf.
type pslot[V comparable] struct {
	node *pnode[V]
	leaf *pleaf[V]
}

// pleaf holds the entries of one full hash, sorted by key; more than one
// only on a 64-bit collision.
type pleaf[V comparable] struct {
	hash uint64
	kvs  []pkv[V]
}

type pkv[V comparable] struct {
	key string
	val V
}

// maxDepth is the depth at which all 64 hash bits are used: levels 0-11
// take five bits each, level 12 the last four.
const maxDepth = 12

func slotIndex(h uint64, depth int) uint {
	if depth < maxDepth {
		return uint(h>>(59-5*depth)) & 31
	}
	return uint(h) & 15
}

// hashKey is FNV-1a followed by a 64-bit finalizer so that keys differing
// only in their last bytes (uids, IPs) still spread over the top bits.
func hashKey(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func (m pmap[V]) Len() int { return m.n }

func (m pmap[V]) get(key string) (V, bool) {
	var zero V
	h := hashKey(key)
	n := m.root
	for depth := 0; n != nil; depth++ {
		bit := uint32(1) << slotIndex(h, depth)
		if n.bitmap&bit == 0 {
			return zero, false
		}
		s := n.slots[bits.OnesCount32(n.bitmap&(bit-1))]
		if s.node != nil {
			n = s.node
			continue
		}
		if s.leaf.hash != h {
			return zero, false
		}
		for _, kv := range s.leaf.kvs {
			if kv.key == key {
				return kv.val, true
			}
		}
		return zero, false
	}
	return zero, false
}

// set returns the map with key bound to val; the same map when key was
// already bound to val.
func (m pmap[V]) set(key string, val V) pmap[V] {
	h := hashKey(key)
	if m.root == nil {
		return pmap[V]{root: singleLeafNode(&pleaf[V]{hash: h, kvs: []pkv[V]{{key, val}}}, 0), n: 1}
	}
	root, added, changed := m.root.set(h, 0, key, val)
	if !changed {
		return m
	}
	if added {
		return pmap[V]{root: root, n: m.n + 1}
	}
	return pmap[V]{root: root, n: m.n}
}

// del returns the map without key; the same map when key was absent.
func (m pmap[V]) del(key string) pmap[V] {
	if m.root == nil {
		return m
	}
	root, removed := m.root.del(hashKey(key), 0, key)
	if !removed {
		return m
	}
	return pmap[V]{root: root, n: m.n - 1}
}

func singleLeafNode[V comparable](l *pleaf[V], depth int) *pnode[V] {
	return &pnode[V]{bitmap: 1 << slotIndex(l.hash, depth), slots: []pslot[V]{{leaf: l}}}
}

func (n *pnode[V]) withSlot(pos int, s pslot[V]) *pnode[V] {
	slots := make([]pslot[V], len(n.slots))
	copy(slots, n.slots)
	slots[pos] = s
	return &pnode[V]{bitmap: n.bitmap, slots: slots}
}

func (n *pnode[V]) set(h uint64, depth int, key string, val V) (*pnode[V], bool, bool) {
	bit := uint32(1) << slotIndex(h, depth)
	pos := bits.OnesCount32(n.bitmap & (bit - 1))
	if n.bitmap&bit == 0 {
		slots := make([]pslot[V], len(n.slots)+1)
		copy(slots, n.slots[:pos])
		slots[pos] = pslot[V]{leaf: &pleaf[V]{hash: h, kvs: []pkv[V]{{key, val}}}}
		copy(slots[pos+1:], n.slots[pos:])
		return &pnode[V]{bitmap: n.bitmap | bit, slots: slots}, true, true
	}
	s := n.slots[pos]
	if s.node != nil {
		child, added, changed := s.node.set(h, depth+1, key, val)
		if !changed {
			return n, false, false
		}
		return n.withSlot(pos, pslot[V]{node: child}), added, true
	}
	l := s.leaf
	if l.hash == h {
		i, found := l.find(key)
		if found {
			if l.kvs[i].val == val {
				return n, false, false
			}
			kvs := make([]pkv[V], len(l.kvs))
			copy(kvs, l.kvs)
			kvs[i].val = val
			return n.withSlot(pos, pslot[V]{leaf: &pleaf[V]{hash: h, kvs: kvs}}), false, true
		}
		kvs := make([]pkv[V], len(l.kvs)+1)
		copy(kvs, l.kvs[:i])
		kvs[i] = pkv[V]{key, val}
		copy(kvs[i+1:], l.kvs[i:])
		return n.withSlot(pos, pslot[V]{leaf: &pleaf[V]{hash: h, kvs: kvs}}), true, true
	}
	child := splitLeaves(l, &pleaf[V]{hash: h, kvs: []pkv[V]{{key, val}}}, depth+1)
	return n.withSlot(pos, pslot[V]{node: child}), true, true
}

// splitLeaves builds the node at depth holding two leaves of different
// hashes that share the path so far.
func splitLeaves[V comparable](a, b *pleaf[V], depth int) *pnode[V] {
	ia, ib := slotIndex(a.hash, depth), slotIndex(b.hash, depth)
	if ia == ib {
		return &pnode[V]{bitmap: 1 << ia, slots: []pslot[V]{{node: splitLeaves(a, b, depth+1)}}}
	}
	if ia > ib {
		a, b = b, a
		ia, ib = ib, ia
	}
	return &pnode[V]{bitmap: 1<<ia | 1<<ib, slots: []pslot[V]{{leaf: a}, {leaf: b}}}
}

func (l *pleaf[V]) find(key string) (int, bool) {
	for i, kv := range l.kvs {
		if kv.key == key {
			return i, true
		}
		if kv.key > key {
			return i, false
		}
	}
	return len(l.kvs), false
}

// del returns the node without key (nil when it became empty) and whether
// key was there. A child left with a single leaf is folded into its
// parent, so the trie keeps one shape for one content.
func (n *pnode[V]) del(h uint64, depth int, key string) (*pnode[V], bool) {
	bit := uint32(1) << slotIndex(h, depth)
	if n.bitmap&bit == 0 {
		return n, false
	}
	pos := bits.OnesCount32(n.bitmap & (bit - 1))
	s := n.slots[pos]
	if s.node != nil {
		child, removed := s.node.del(h, depth+1, key)
		if !removed {
			return n, false
		}
		switch {
		case child == nil:
			return n.without(pos, bit), true
		case len(child.slots) == 1 && child.slots[0].leaf != nil:
			return n.withSlot(pos, pslot[V]{leaf: child.slots[0].leaf}), true
		default:
			return n.withSlot(pos, pslot[V]{node: child}), true
		}
	}
	l := s.leaf
	if l.hash != h {
		return n, false
	}
	i, found := l.find(key)
	if !found {
		return n, false
	}
	if len(l.kvs) == 1 {
		return n.without(pos, bit), true
	}
	kvs := make([]pkv[V], 0, len(l.kvs)-1)
	kvs = append(kvs, l.kvs[:i]...)
	kvs = append(kvs, l.kvs[i+1:]...)
	return n.withSlot(pos, pslot[V]{leaf: &pleaf[V]{hash: h, kvs: kvs}}), true
}

func (n *pnode[V]) without(pos int, bit uint32) *pnode[V] {
	if len(n.slots) == 1 {
		return nil
	}
	slots := make([]pslot[V], 0, len(n.slots)-1)
	slots = append(slots, n.slots[:pos]...)
	slots = append(slots, n.slots[pos+1:]...)
	return &pnode[V]{bitmap: n.bitmap &^ bit, slots: slots}
}

// each calls fn for every entry in (hash, key) order until fn returns false.
func (m pmap[V]) each(fn func(key string, val V) bool) {
	if m.root != nil {
		m.root.each(fn)
	}
}

func (n *pnode[V]) each(fn func(key string, val V) bool) bool {
	for _, s := range n.slots {
		if s.node != nil {
			if !s.node.each(fn) {
				return false
			}
			continue
		}
		for _, kv := range s.leaf.kvs {
			if !fn(kv.key, kv.val) {
				return false
			}
		}
	}
	return true
}

// diffFunc receives one difference: hadOld/hasNew say whether the key is
// in the old and the new map.
type diffFunc[V comparable] func(key string, old V, hadOld bool, new V, hasNew bool)

// diff reports every key whose value differs between old and m, in (hash,
// key) order, skipping shared subtrees.
func (m pmap[V]) diff(old pmap[V], fn diffFunc[V]) {
	diffNodes(old.root, m.root, 0, fn)
}

func diffNodes[V comparable](a, b *pnode[V], depth int, fn diffFunc[V]) {
	if a == b {
		return
	}
	var zero V
	if a == nil {
		b.each(func(k string, v V) bool { fn(k, zero, false, v, true); return true })
		return
	}
	if b == nil {
		a.each(func(k string, v V) bool { fn(k, v, true, zero, false); return true })
		return
	}
	union := a.bitmap | b.bitmap
	for union != 0 {
		bit := union & -union
		union &^= bit
		var sa, sb *pslot[V]
		if a.bitmap&bit != 0 {
			sa = &a.slots[bits.OnesCount32(a.bitmap&(bit-1))]
		}
		if b.bitmap&bit != 0 {
			sb = &b.slots[bits.OnesCount32(b.bitmap&(bit-1))]
		}
		diffSlots(sa, sb, depth+1, fn)
	}
}

func diffSlots[V comparable](a, b *pslot[V], depth int, fn diffFunc[V]) {
	var zero V
	switch {
	case a == nil:
		b.each(func(k string, v V) bool { fn(k, zero, false, v, true); return true })
	case b == nil:
		a.each(func(k string, v V) bool { fn(k, v, true, zero, false); return true })
	case a.node != nil && b.node != nil:
		diffNodes(a.node, b.node, depth, fn)
	case a.leaf != nil && b.leaf != nil:
		if a.leaf != b.leaf {
			diffLeaves(a.leaf, b.leaf, fn)
		}
	default:
		// A leaf on one side, a subtree on the other (a split or a fold):
		// small, since it holds at most the leaf's entries plus one.
		diffMixed(a, b, fn)
	}
}

func (s *pslot[V]) each(fn func(key string, val V) bool) {
	if s.node != nil {
		s.node.each(fn)
		return
	}
	for _, kv := range s.leaf.kvs {
		if !fn(kv.key, kv.val) {
			return
		}
	}
}

func diffLeaves[V comparable](a, b *pleaf[V], fn diffFunc[V]) {
	var zero V
	if a.hash != b.hash {
		for _, kv := range a.kvs {
			fn(kv.key, kv.val, true, zero, false)
		}
		for _, kv := range b.kvs {
			fn(kv.key, zero, false, kv.val, true)
		}
		return
	}
	i, j := 0, 0
	for i < len(a.kvs) || j < len(b.kvs) {
		switch {
		case j == len(b.kvs) || (i < len(a.kvs) && a.kvs[i].key < b.kvs[j].key):
			fn(a.kvs[i].key, a.kvs[i].val, true, zero, false)
			i++
		case i == len(a.kvs) || b.kvs[j].key < a.kvs[i].key:
			fn(b.kvs[j].key, zero, false, b.kvs[j].val, true)
			j++
		default:
			if a.kvs[i].val != b.kvs[j].val {
				fn(a.kvs[i].key, a.kvs[i].val, true, b.kvs[j].val, true)
			}
			i++
			j++
		}
	}
}

func diffMixed[V comparable](a, b *pslot[V], fn diffFunc[V]) {
	var zero V
	collect := func(s *pslot[V]) map[string]V {
		m := map[string]V{}
		s.each(func(k string, v V) bool { m[k] = v; return true })
		return m
	}
	am, bm := collect(a), collect(b)
	a.each(func(k string, v V) bool {
		if nv, ok := bm[k]; !ok {
			fn(k, v, true, zero, false)
		} else if nv != v {
			fn(k, v, true, nv, true)
		}
		return true
	})
	b.each(func(k string, v V) bool {
		if _, ok := am[k]; !ok {
			fn(k, zero, false, v, true)
		}
		return true
	})
}
