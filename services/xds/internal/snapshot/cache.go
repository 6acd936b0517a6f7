package snapshot

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// How the Cache works
//
// The Cache holds one current Snapshot. A Snapshot is immutable: per type
// URL, a persistent hash trie of name → *Resource, one of alias → owners,
// and a short changelog. Apply builds the next Snapshot from the current
// one by path-copying only the trie nodes on the way to what changed
// (O(changes × depth), depth ≤ 13), so a change in a 100k-resource type
// copies a few hundred bytes, and any Snapshot a stream still holds stays
// valid and cheap: it shares everything that did not change since.
//
// Streams therefore keep no copy of names: a stream remembers the
// TypeSnapshot it last sent (two words), and when a newer one arrives asks
// ChangedKeys(sent) for the names and aliases that changed in between.
// That is answered from the changelog in time proportional to the changes
// while the stream is at most MaxLogEntries generations / MaxLogKeys keys
// behind, and otherwise by a structural diff of the two tries, which skips
// every shared subtree and so is also proportional to the changes (times
// the trie depth) — it never compares 100k entries one by one.
//
// An upsert whose version equals the stored one is dropped, so a translator
// that re-emits everything (after a feed re-list, on a replica restart)
// changes nothing and wakes no stream. Every effective Apply bumps the
// generation; an Apply that only moves the revision still publishes a
// Snapshot, because distribution status reports the revision a proxy has,
// and a proxy that needs nothing from a change has that revision too.

// Origin is where a change came from: when the feed event was published and
// its span, so pushes can measure latency from the event and link to it.
type Origin struct {
	At   time.Time
	Span trace.SpanContext
}

// Options bound the Cache's history.
type Options struct {
	// MaxLogKeys bounds the keys one type's changelog holds (default 16384).
	MaxLogKeys int
	// MaxLogEntries bounds the generations one type's changelog holds
	// (default 1024).
	MaxLogEntries int
	// MaxOrigins bounds the origins a Snapshot remembers (default 64).
	MaxOrigins int
}

func (o *Options) setDefaults() {
	if o.MaxLogKeys <= 0 {
		o.MaxLogKeys = 16384
	}
	if o.MaxLogEntries <= 0 {
		o.MaxLogEntries = 1024
	}
	if o.MaxOrigins <= 0 {
		o.MaxOrigins = 64
	}
}

// Cache is the current set of resources of every type. Apply and Replace
// may be called from several goroutines (they serialize); Current and the
// Snapshots it returns may be used from any number of goroutines.
type Cache struct {
	opts Options

	mu  sync.Mutex // serializes writers
	cur atomic.Pointer[Snapshot]

	subMu sync.Mutex
	subs  map[chan struct{}]struct{}
}

// New returns an empty cache at generation 0, revision 0.
func New(o Options) *Cache {
	o.setDefaults()
	c := &Cache{opts: o, subs: map[chan struct{}]struct{}{}}
	c.cur.Store(&Snapshot{types: map[string]*typeIndex{}})
	return c
}

// Current returns the newest snapshot.
func (c *Cache) Current() *Snapshot { return c.cur.Load() }

// Subscribe returns a channel that receives a value after every Apply that
// published a snapshot. It holds at most one value: several Applies before
// the subscriber reads coalesce into one notification, and Current is
// always the newest. cancel releases the subscription.
func (c *Cache) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.subMu.Lock()
	c.subs[ch] = struct{}{}
	c.subMu.Unlock()
	return ch, func() {
		c.subMu.Lock()
		delete(c.subs, ch)
		c.subMu.Unlock()
	}
}

func (c *Cache) notify() {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Apply applies deltas reflecting the feed at revision and returns the
// generation of the resulting snapshot. Within one Delta, removals apply
// before upserts. Upserts with the stored version are no-ops.
func (c *Cache) Apply(revision int64, deltas ...Delta) uint64 {
	return c.ApplyFrom(Origin{}, revision, deltas...)
}

// ApplyFrom is Apply recording where the change came from.
func (c *Cache) ApplyFrom(o Origin, revision int64, deltas ...Delta) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.begin()
	for _, d := range deltas {
		tb := b.typ(d.TypeURL)
		for _, name := range d.Removals {
			tb.remove(name)
		}
		for _, r := range d.Upserts {
			tb.upsert(r)
		}
	}
	return c.commit(b, o, revision)
}

// Replace makes the given resources the whole content of the cache, as of
// revision: every type not named in full becomes empty, and within a type
// anything not upserted is removed (Removals in full are ignored). Only
// what actually differs counts as changed, so replacing the cache with an
// identical content after a re-list wakes no stream. It costs a pass over
// every resource, which is what a re-list costs anyway.
func (c *Cache) Replace(o Origin, revision int64, full ...Delta) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.begin()
	want := map[string]map[string]*Resource{}
	for _, d := range full {
		m := want[d.TypeURL]
		if m == nil {
			m = map[string]*Resource{}
			want[d.TypeURL] = m
		}
		for _, r := range d.Upserts {
			if r != nil && r.Name != "" {
				m[r.Name] = r
			}
		}
	}
	urls := make([]string, 0, len(b.old.types)+len(want))
	for url := range b.old.types {
		urls = append(urls, url)
	}
	for url := range want {
		if b.old.types[url] == nil {
			urls = append(urls, url)
		}
	}
	slices.Sort(urls)
	for _, url := range urls {
		tb := b.typ(url)
		m := want[url]
		var gone []string
		tb.idx.names.each(func(name string, _ *Resource) bool {
			if _, ok := m[name]; !ok {
				gone = append(gone, name)
			}
			return true
		})
		for _, name := range gone {
			tb.remove(name)
		}
		names := make([]string, 0, len(m))
		for name := range m {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			tb.upsert(m[name])
		}
	}
	return c.commit(b, o, revision)
}

type builder struct {
	old   *Snapshot
	types map[string]*typeBuilder
	order []string
}

func (c *Cache) begin() *builder {
	return &builder{old: c.cur.Load(), types: map[string]*typeBuilder{}}
}

func (b *builder) typ(url string) *typeBuilder {
	tb := b.types[url]
	if tb == nil {
		tb = &typeBuilder{keys: map[string]struct{}{}}
		if old := b.old.types[url]; old != nil {
			tb.idx = *old
		}
		b.types[url] = tb
		b.order = append(b.order, url)
	}
	return tb
}

func (c *Cache) commit(b *builder, o Origin, revision int64) uint64 {
	old := b.old
	changed := false
	for _, tb := range b.types {
		if len(tb.keys) > 0 {
			changed = true
			break
		}
	}
	if !changed && revision == old.revision {
		return old.generation
	}
	next := &Snapshot{generation: old.generation + 1, revision: revision, types: old.types, origins: old.origins}
	if changed {
		next.types = make(map[string]*typeIndex, len(old.types)+len(b.types))
		for url, ti := range old.types {
			next.types[url] = ti
		}
		for _, url := range b.order {
			tb := b.types[url]
			if len(tb.keys) == 0 {
				if old.types[url] == nil {
					// A type named without content: make it known (empty).
					next.types[url] = &typeIndex{}
				}
				continue
			}
			idx := tb.idx
			idx.changedAt = next.generation
			keys := make([]string, 0, len(tb.keys))
			for k := range tb.keys {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			idx.log = idx.log.append(next.generation, keys, c.opts.MaxLogEntries, c.opts.MaxLogKeys)
			next.types[url] = &idx
		}
		if !o.At.IsZero() || o.Span.IsValid() {
			next.origins = appendBounded(old.origins, originEntry{gen: next.generation, origin: o}, c.opts.MaxOrigins)
		}
	}
	c.cur.Store(next)
	c.notify()
	return next.generation
}

func appendBounded[T any](s []T, v T, limit int) []T {
	if len(s) >= limit {
		s = s[len(s)-limit+1:]
	}
	// Appending in place is safe: older snapshots only read their own
	// length, and only the newest snapshot is ever extended.
	return append(s, v)
}

// typeBuilder accumulates one Apply's changes to one type.
type typeBuilder struct {
	idx  typeIndex
	keys map[string]struct{} // names and aliases whose resolution changed
}

func (tb *typeBuilder) upsert(r *Resource) {
	if r == nil || r.Name == "" {
		return
	}
	old, had := tb.idx.names.get(r.Name)
	if had && old.Version == r.Version && slices.Equal(old.Aliases, r.Aliases) {
		return
	}
	tb.idx.names = tb.idx.names.set(r.Name, r)
	tb.keys[r.Name] = struct{}{}
	if had {
		for _, a := range old.Aliases {
			tb.keys[a] = struct{}{}
			if !slices.Contains(r.Aliases, a) {
				tb.dropOwner(a, r.Name)
			}
		}
	}
	for _, a := range r.Aliases {
		tb.keys[a] = struct{}{}
		if !had || !slices.Contains(old.Aliases, a) {
			tb.addOwner(a, r.Name)
		}
	}
}

func (tb *typeBuilder) remove(name string) {
	old, had := tb.idx.names.get(name)
	if !had {
		return
	}
	tb.idx.names = tb.idx.names.del(name)
	tb.keys[name] = struct{}{}
	for _, a := range old.Aliases {
		tb.keys[a] = struct{}{}
		tb.dropOwner(a, name)
	}
}

// aliasOwners lists, sorted, the resources claiming one alias. The first
// one answers it, so the answer does not depend on the order in which
// replicas applied the claims (an IP briefly held by two workloads).
type aliasOwners struct{ names []string }

func (tb *typeBuilder) addOwner(alias, name string) {
	cur, _ := tb.idx.aliases.get(alias)
	var names []string
	if cur != nil {
		if slices.Contains(cur.names, name) {
			return
		}
		names = slices.Clone(cur.names)
	}
	names = append(names, name)
	slices.Sort(names)
	tb.idx.aliases = tb.idx.aliases.set(alias, &aliasOwners{names: names})
}

func (tb *typeBuilder) dropOwner(alias, name string) {
	cur, _ := tb.idx.aliases.get(alias)
	if cur == nil {
		return
	}
	i := slices.Index(cur.names, name)
	if i < 0 {
		return
	}
	if len(cur.names) == 1 {
		tb.idx.aliases = tb.idx.aliases.del(alias)
		return
	}
	tb.idx.aliases = tb.idx.aliases.set(alias, &aliasOwners{names: slices.Delete(slices.Clone(cur.names), i, i+1)})
}

type originEntry struct {
	gen    uint64
	origin Origin
}

// typeIndex is one type's content in one snapshot.
type typeIndex struct {
	names     pmap[*Resource]
	aliases   pmap[*aliasOwners]
	changedAt uint64 // generation of the type's last change
	log       changelog
}

// changelog lists the keys each recent generation changed. floor is the
// generation up to which entries were dropped: changes after floor are all
// listed.
type changelog struct {
	floor   uint64
	entries []logEntry
	keys    int
}

type logEntry struct {
	gen  uint64
	keys []string
}

func (l changelog) append(gen uint64, keys []string, maxEntries, maxKeys int) changelog {
	entries := l.entries
	total := l.keys + len(keys)
	floor := l.floor
	drop := 0
	for drop < len(entries) && (len(entries)-drop+1 > maxEntries || total > maxKeys) {
		total -= len(entries[drop].keys)
		floor = entries[drop].gen
		drop++
	}
	entries = entries[drop:]
	if len(keys) > maxKeys {
		// Too big to keep: readers behind this point diff instead.
		return changelog{floor: gen, entries: entries[len(entries):]}
	}
	return changelog{floor: floor, entries: append(entries, logEntry{gen: gen, keys: keys}), keys: total}
}

// Snapshot is an immutable view of the cache at one generation.
type Snapshot struct {
	generation uint64
	revision   int64
	types      map[string]*typeIndex
	origins    []originEntry
}

// Generation counts the snapshots this cache published; it is local to the
// process.
func (s *Snapshot) Generation() uint64 { return s.generation }

// Revision is the feed revision the snapshot reflects; the same on every
// replica for the same content.
func (s *Snapshot) Revision() int64 { return s.revision }

// TypeURLs lists the known types, sorted.
func (s *Snapshot) TypeURLs() []string {
	out := make([]string, 0, len(s.types))
	for url := range s.types {
		out = append(out, url)
	}
	slices.Sort(out)
	return out
}

// Type returns one type's content at this snapshot's generation. A
// TypeSnapshot pins only that type's index, which later snapshots share
// until the type changes, so holding one costs nothing while the type is
// unchanged.
func (s *Snapshot) Type(typeURL string) TypeSnapshot {
	return TypeSnapshot{gen: s.generation, idx: s.types[typeURL]}
}

// Len is the number of resources of a type.
func (s *Snapshot) Len(typeURL string) int { return s.Type(typeURL).Len() }

// Get returns the resource of a type with exactly this name, or nil.
func (s *Snapshot) Get(typeURL, name string) *Resource { return s.Type(typeURL).Get(name) }

// Resolve is TypeSnapshot.Resolve for one type.
func (s *Snapshot) Resolve(typeURL, key string) *Resource { return s.Type(typeURL).Resolve(key) }

// Range is TypeSnapshot.Range for one type.
func (s *Snapshot) Range(typeURL string, fn func(*Resource) bool) { s.Type(typeURL).Range(fn) }

// ChangedAt is the generation of the last change to a type (0: never).
func (s *Snapshot) ChangedAt(typeURL string) uint64 { return s.Type(typeURL).ChangedAt() }

// ChangedKeys is TypeSnapshot.ChangedKeys for one type between two
// snapshots.
func (s *Snapshot) ChangedKeys(old *Snapshot, typeURL string) []string {
	if old == nil {
		return nil
	}
	return s.Type(typeURL).ChangedKeys(old.Type(typeURL))
}

// TypeSnapshot is one type's immutable content at one generation. The zero
// value is an empty type at generation 0.
type TypeSnapshot struct {
	gen uint64
	idx *typeIndex
}

// Generation is the snapshot generation the view was taken at.
func (t TypeSnapshot) Generation() uint64 { return t.gen }

// Len is the number of resources.
func (t TypeSnapshot) Len() int {
	if t.idx == nil {
		return 0
	}
	return t.idx.names.Len()
}

// Get returns the resource with exactly this name, or nil.
func (t TypeSnapshot) Get(name string) *Resource {
	if t.idx == nil {
		return nil
	}
	r, _ := t.idx.names.get(name)
	return r
}

// Resolve returns the resource answering a subscription to key: the
// resource of that name, else the one holding key as an alias (the first
// by name when several do), else nil.
func (t TypeSnapshot) Resolve(key string) *Resource {
	if t.idx == nil {
		return nil
	}
	if r, ok := t.idx.names.get(key); ok {
		return r
	}
	if owners, ok := t.idx.aliases.get(key); ok {
		r, _ := t.idx.names.get(owners.names[0])
		return r
	}
	return nil
}

// Range calls fn for every resource in a deterministic order (by name
// hash, the same on every replica) until fn returns false.
func (t TypeSnapshot) Range(fn func(*Resource) bool) {
	if t.idx != nil {
		t.idx.names.each(func(_ string, r *Resource) bool { return fn(r) })
	}
}

// ChangedAt is the generation of the type's last change (0: never).
func (t TypeSnapshot) ChangedAt() uint64 {
	if t.idx == nil {
		return 0
	}
	return t.idx.changedAt
}

// Same reports whether both views hold the same content object (a cheap
// "nothing changed" test).
func (t TypeSnapshot) Same(o TypeSnapshot) bool { return t.idx == o.idx }

// ChangedKeys returns the names and aliases whose resolution may differ
// between old (an earlier view of the same type from the same cache) and
// t, sorted and without duplicates. It may include keys that changed and
// changed back; callers compare old.Resolve and t.Resolve. It answers from
// the changelog while old is recent enough, else by a structural diff;
// both cost time proportional to the changes.
func (t TypeSnapshot) ChangedKeys(old TypeSnapshot) []string {
	if t.idx == old.idx || t.ChangedAt() <= old.gen {
		return nil
	}
	if keys, ok := t.changedSince(old.gen); ok {
		return keys
	}
	var oldNames, newNames pmap[*Resource]
	if old.idx != nil {
		oldNames = old.idx.names
	}
	if t.idx != nil {
		newNames = t.idx.names
	}
	set := map[string]struct{}{}
	newNames.diff(oldNames, func(name string, o *Resource, hadOld bool, n *Resource, hasNew bool) {
		set[name] = struct{}{}
		if hadOld {
			for _, a := range o.Aliases {
				set[a] = struct{}{}
			}
		}
		if hasNew {
			for _, a := range n.Aliases {
				set[a] = struct{}{}
			}
		}
	})
	return sortedKeys(set)
}

// changedSince answers from the changelog; ok is false when gen is older
// than what the log covers.
func (t TypeSnapshot) changedSince(gen uint64) ([]string, bool) {
	if t.idx == nil {
		return nil, true
	}
	if gen < t.idx.log.floor {
		return nil, false
	}
	i, _ := slices.BinarySearchFunc(t.idx.log.entries, gen+1, func(e logEntry, g uint64) int {
		switch {
		case e.gen < g:
			return -1
		case e.gen > g:
			return 1
		}
		return 0
	})
	entries := t.idx.log.entries[i:]
	switch len(entries) {
	case 0:
		return nil, true
	case 1:
		return entries[0].keys, true
	}
	set := map[string]struct{}{}
	for _, e := range entries {
		for _, k := range e.keys {
			set[k] = struct{}{}
		}
	}
	return sortedKeys(set), true
}

func sortedKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// OriginsSince returns the origins of the changes after generation gen
// that the snapshot still remembers: the earliest event time and the span
// contexts (at most limit, the earliest first).
func (s *Snapshot) OriginsSince(gen uint64, limit int) (earliest time.Time, spans []trace.SpanContext) {
	for _, e := range s.origins {
		if e.gen <= gen {
			continue
		}
		if !e.origin.At.IsZero() && (earliest.IsZero() || e.origin.At.Before(earliest)) {
			earliest = e.origin.At
		}
		if e.origin.Span.IsValid() && len(spans) < limit {
			spans = append(spans, e.origin.Span)
		}
	}
	return earliest, spans
}
