// Package watchhub serves the config API's Watch from the change feed, so
// etcd carries one watcher (the feed leader's publisher) however many
// clients watch (DESIGN §3).
//
// Each config replica runs one changefeed.Consumer with a Hub as its
// Handler. The Hub keeps a bounded ring of the most recent events, rendered
// once as API objects and shared by every watcher, and fans each new event
// out to the watchers whose filter (kind, namespace) matches it.
//
// A watch names the revision it has seen (a List's revision, or the last
// event it received) and receives every matching event after it, exactly
// once, in order. The Hub can honour that only while it holds every event
// after the revision: when the ring has already dropped events after it,
// or the Hub started (listed) after it, the watch fails with ErrRelist and
// the client lists again, as with Kubernetes' "too old resource version".
// The same error ends watches whenever continuity is lost: the consumer
// re-listed (Reset: a gap or a resync marker on the feed, so events may be
// missing), or a watcher fell so far behind that its bounded buffer
// overflowed (a slow client must not hold back the Hub or anyone else).
package watchhub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/services/config/internal/store"
)

var (
	// ErrRelist ends a watch whose continuity the Hub cannot guarantee;
	// the client must list again and watch from the listing's revision.
	ErrRelist = errors.New("list again and watch from the list's revision")
	// ErrClosed: the Hub shut down with its replica; watch another one.
	ErrClosed = errors.New("watch cache is shutting down")
)

// Re-list reasons, the "reason" attribute of the re-list metric.
const (
	ReasonTooOld = "too_old" // the revision is older than the ring holds
	ReasonReset  = "reset"   // the consumer re-listed
	ReasonSlow   = "slow"    // the watcher's buffer overflowed
)

// Defaults for Options.
const (
	DefaultCapacity      = 10000
	DefaultMaxBytes      = 256 << 20
	DefaultWatcherBuffer = 1024
)

// Event is one change as Watch sends it. It is immutable once in the Hub
// and shared by every watcher that receives it.
type Event struct {
	Type store.EventType
	// Revision is the etcd revision of the change.
	Revision int64
	// Ref names the object; filters match on it.
	Ref changefeed.ResourceRef
	// Object is the API object (JSON), resourceVersion filled in.
	Object []byte
	// Err is set when the event could not be rendered: a watcher that
	// reaches it ends with Err, as a direct etcd watch would have, while
	// watchers of other kinds are unaffected.
	Err error
}

// RenderFunc turns a change-feed event into what Watch sends.
type RenderFunc func(changefeed.Event) (Event, error)

// StoreRender renders through st.FeedEvent, so watch events are
// byte-for-byte the objects Get and List return.
func StoreRender(st *store.Store) RenderFunc {
	return func(ev changefeed.Event) (Event, error) {
		e, err := st.FeedEvent(ev)
		if err != nil {
			return Event{}, err
		}
		b, err := e.Object.JSON()
		if err != nil {
			return Event{}, fmt.Errorf("render %s at revision %d: %w", ev.Object.Ref, e.Revision, err)
		}
		return Event{Type: e.Type, Revision: e.Revision, Ref: ev.Object.Ref, Object: b}, nil
	}
}

// Filter selects events by key group, kind and namespace; empty fields
// match everything.
type Filter struct {
	// Group is the key group ("core" for core kinds); used with Kind.
	Group, Kind string
	// Namespace as stored ("_" for cluster-scoped kinds).
	Namespace string
}

// Matches reports whether ref passes the filter.
func (f Filter) Matches(ref changefeed.ResourceRef) bool {
	if f.Kind != "" && (ref.Group != f.Group || ref.Kind != f.Kind) {
		return false
	}
	return f.Namespace == "" || ref.Namespace == f.Namespace
}

// Options configure a Hub.
type Options struct {
	// Render turns feed events into API events. Required.
	Render RenderFunc
	// Capacity is how many recent events the ring keeps (default 10000):
	// how far back a watch may resume without a re-list.
	Capacity int
	// MaxBytes bounds the objects the ring holds (default 256 MiB), so a
	// burst of large objects cannot exhaust memory; the newest event is
	// always kept.
	MaxBytes int
	// WatcherBuffer is how many live events one watcher may have pending
	// (default 1024); beyond it the watcher ends with ErrRelist.
	WatcherBuffer int
	Logger        *slog.Logger
	MeterProvider metric.MeterProvider
}

// Hub is a changefeed.Handler that fans the feed out to watchers.
type Hub struct {
	render   RenderFunc
	bufSize  int
	maxBytes int
	log      *slog.Logger

	watchersGauge metric.Int64UpDownCounter
	relists       metric.Int64Counter

	ready     chan struct{} // closed by the first Reset
	closed    chan struct{} // closed by Close
	readyOnce sync.Once
	closeOnce sync.Once

	mu sync.Mutex
	// ring holds the newest events in order; start indexes the oldest.
	ring  []*Event
	start int
	n     int
	bytes int // object bytes in the ring
	// floor: every event with a revision above it is in the ring.
	floor int64
	// applied is the revision the Hub reflects.
	applied  int64
	resets   int
	all      map[*Watcher]struct{}
	byKind   map[changefeed.GroupKind]map[*Watcher]struct{}
	watchers int
	isClosed bool
}

var _ changefeed.Handler = (*Hub)(nil)

// New returns a Hub; it is ready once the consumer delivered its first
// snapshot.
func New(o Options) (*Hub, error) {
	if o.Render == nil {
		return nil, errors.New("watchhub: Options.Render is required")
	}
	if o.Capacity <= 0 {
		o.Capacity = DefaultCapacity
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.WatcherBuffer <= 0 {
		o.WatcherBuffer = DefaultWatcherBuffer
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MeterProvider == nil {
		o.MeterProvider = noop.NewMeterProvider()
	}
	m := o.MeterProvider.Meter("github.com/ambitmesh/ambit/services/config/internal/watchhub")
	gauge, err := m.Int64UpDownCounter("ambit_config_watchers", metric.WithDescription("Open Watch streams served from the change feed."))
	if err != nil {
		return nil, fmt.Errorf("watchhub: metrics: %w", err)
	}
	relists, err := m.Int64Counter("ambit_config_watch_relists_total", metric.WithDescription("Watches ended or refused with a re-list error, by reason (too_old, reset, slow)."))
	if err != nil {
		return nil, fmt.Errorf("watchhub: metrics: %w", err)
	}
	return &Hub{
		render:        o.Render,
		bufSize:       o.WatcherBuffer,
		maxBytes:      o.MaxBytes,
		log:           o.Logger.With("component", "watchhub"),
		watchersGauge: gauge,
		relists:       relists,
		ready:         make(chan struct{}),
		closed:        make(chan struct{}),
		ring:          make([]*Event, o.Capacity),
		all:           map[*Watcher]struct{}{},
		byKind:        map[changefeed.GroupKind]map[*Watcher]struct{}{},
	}, nil
}

// Ready is closed once the Hub holds a snapshot's revision and follows the
// feed.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Status is a snapshot of the Hub's state, for stats and tests.
type Status struct {
	Ready bool
	// Revision is the revision the Hub reflects; Oldest the revision a
	// watch may start after at the earliest.
	Revision, Oldest int64
	// Events and object Bytes in the ring, open Watchers, Resets seen.
	Events, Bytes, Watchers, Resets int
}

// Status returns the Hub's current state.
func (h *Hub) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := Status{Revision: h.applied, Oldest: h.floor, Events: h.n, Bytes: h.bytes, Watchers: h.watchers, Resets: h.resets}
	select {
	case <-h.ready:
		st.Ready = true
	default:
	}
	return st
}

// Reset starts over from a snapshot. The Hub cannot tell what changed
// between its last event and the snapshot, so every open watch ends with
// ErrRelist; its client lists again.
func (h *Hub) Reset(ctx context.Context, snap changefeed.Snapshot) error {
	h.mu.Lock()
	clear(h.ring)
	h.start, h.n, h.bytes = 0, 0, 0
	h.floor, h.applied = snap.Revision, snap.Revision
	h.resets++
	first := h.resets == 1
	ended := h.endAllLocked(fmt.Errorf("watch cache reset at revision %d (the change feed re-listed, so continuity is lost): %w", snap.Revision, ErrRelist))
	h.mu.Unlock()
	h.readyOnce.Do(func() { close(h.ready) })
	if ended > 0 {
		h.relists.Add(ctx, int64(ended), metric.WithAttributes(attribute.String("reason", ReasonReset)))
	}
	if !first {
		h.log.InfoContext(ctx, "watch cache reset; open watches must re-list", "revision", snap.Revision, "watches_ended", ended)
	}
	return nil
}

// Apply appends one event and hands it to every matching watcher without
// blocking: a watcher whose buffer is full is ended instead.
func (h *Hub) Apply(ctx context.Context, fev changefeed.Event) error {
	ev, err := h.render(fev)
	if err != nil {
		h.log.WarnContext(ctx, "feed event does not render; watches that reach it will fail", "key", fev.Object.Ref.Key(), "revision", fev.Position.Revision, "error", err)
		ev = Event{Revision: fev.Position.Revision, Ref: fev.Object.Ref, Err: err}
	}
	e := &ev
	slow := 0
	h.mu.Lock()
	if h.isClosed {
		h.mu.Unlock()
		return nil
	}
	h.pushLocked(e)
	h.applied = e.Revision
	deliver := func(set map[*Watcher]struct{}) {
		for w := range set {
			if e.Revision <= w.after || !w.filter.Matches(e.Ref) {
				continue
			}
			select {
			case w.ch <- e:
			default:
				h.endLocked(w, fmt.Errorf("watcher fell %d events behind at revision %d: %w", cap(w.ch), e.Revision, ErrRelist))
				slow++
			}
		}
	}
	deliver(h.all)
	deliver(h.byKind[e.Ref.GroupKind()])
	h.mu.Unlock()
	if slow > 0 {
		h.relists.Add(ctx, int64(slow), metric.WithAttributes(attribute.String("reason", ReasonSlow)))
		h.log.InfoContext(ctx, "ended watches that fell behind", "count", slow, "revision", e.Revision)
	}
	return nil
}

// pushLocked appends e, dropping the oldest events while the ring is over
// its count or byte bound.
func (h *Hub) pushLocked(e *Event) {
	if h.n == len(h.ring) {
		h.dropOldestLocked()
	}
	h.ring[(h.start+h.n)%len(h.ring)] = e
	h.n++
	h.bytes += len(e.Object)
	for h.n > 1 && h.bytes > h.maxBytes {
		h.dropOldestLocked()
	}
}

func (h *Hub) dropOldestLocked() {
	e := h.ring[h.start]
	// Everything after the dropped event's revision stays in the ring
	// (events are in revision order), so watches may start there.
	h.floor = e.Revision
	h.bytes -= len(e.Object)
	h.ring[h.start] = nil
	h.start = (h.start + 1) % len(h.ring)
	h.n--
}

func (h *Hub) at(i int) *Event { return h.ring[(h.start+i)%len(h.ring)] }

// Close ends every watch with ErrClosed and refuses new ones, so a
// replica shutting down lets its clients move to another replica instead
// of holding the gRPC server's graceful stop.
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.isClosed = true
		h.endAllLocked(fmt.Errorf("%w; watch through another replica", ErrClosed))
		h.mu.Unlock()
		close(h.closed)
	})
}

// Watch registers a watcher of the events matching f after revision after
// (0: from the Hub's current revision). It waits until the Hub is ready or
// ctx ends. It fails with ErrRelist when the Hub no longer holds every event
// after that revision. Close the watcher when done.
func (h *Hub) Watch(ctx context.Context, f Filter, after int64) (*Watcher, error) {
	select {
	case <-h.ready:
	case <-h.closed:
		return nil, fmt.Errorf("%w; watch through another replica", ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the watch cache to sync: %w", context.Cause(ctx))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.isClosed {
		return nil, fmt.Errorf("%w; watch through another replica", ErrClosed)
	}
	if after == 0 {
		after = h.applied
	}
	if after < h.floor {
		h.relists.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", ReasonTooOld)))
		return nil, fmt.Errorf("too old resource version: %d (oldest available %d): %w", after, h.floor, ErrRelist)
	}
	w := &Watcher{
		hub: h, filter: f, after: after,
		ch: make(chan *Event, h.bufSize), done: make(chan struct{}),
	}
	// Events already in the ring are the backlog; later ones arrive on ch.
	// Both under h.mu, so nothing is missed or sent twice.
	i := sort.Search(h.n, func(i int) bool { return h.at(i).Revision > after })
	for ; i < h.n; i++ {
		if e := h.at(i); f.Matches(e.Ref) {
			w.backlog = append(w.backlog, e)
		}
	}
	if f.Kind == "" {
		h.all[w] = struct{}{}
	} else {
		gk := changefeed.GroupKind{Group: f.Group, Kind: f.Kind}
		set := h.byKind[gk]
		if set == nil {
			set = map[*Watcher]struct{}{}
			h.byKind[gk] = set
		}
		set[w] = struct{}{}
	}
	w.registered = true
	h.watchers++
	h.watchersGauge.Add(ctx, 1)
	return w, nil
}

// endAllLocked ends every watcher with err and returns how many.
func (h *Hub) endAllLocked(err error) int {
	n := 0
	for w := range h.all {
		h.endLocked(w, err)
		n++
	}
	for _, set := range h.byKind {
		for w := range set {
			h.endLocked(w, err)
			n++
		}
	}
	return n
}

// endLocked unregisters w and tells it why.
func (h *Hub) endLocked(w *Watcher, err error) {
	if !h.unregisterLocked(w) {
		return
	}
	w.err = err
	close(w.done)
}

func (h *Hub) unregisterLocked(w *Watcher) bool {
	if !w.registered {
		return false
	}
	w.registered = false
	if w.filter.Kind == "" {
		delete(h.all, w)
	} else {
		gk := changefeed.GroupKind{Group: w.filter.Group, Kind: w.filter.Kind}
		delete(h.byKind[gk], w)
		if len(h.byKind[gk]) == 0 {
			delete(h.byKind, gk)
		}
	}
	h.watchers--
	h.watchersGauge.Add(context.Background(), -1)
	return true
}

// Watcher is one watch. Next is meant for a single goroutine.
type Watcher struct {
	hub    *Hub
	filter Filter
	after  int64

	// backlog holds the ring's matching events at registration, sent
	// before anything on ch; bi is the next to send. held is an event
	// taken from ch that did not fit the last batch. Owned by the reader.
	backlog []*Event
	bi      int
	held    *Event
	ch      chan *Event
	done    chan struct{} // closed when the hub ended the watch
	err     error         // why; written before done is closed

	registered bool // guarded by hub.mu
}

// After is the revision the watch started after.
func (w *Watcher) After() int64 { return w.after }

// Next returns the next events in order, at least one, together at most
// maxBytes of objects unless a single object is larger. It blocks until an
// event arrives, the Hub ends the watch (ErrRelist, ErrClosed) or ctx ends.
// An event that did not render ends the watch with its error once the
// events before it were returned.
func (w *Watcher) Next(ctx context.Context, maxBytes int) ([]*Event, error) {
	select {
	case <-w.done:
		return nil, w.err
	default:
	}
	var batch []*Event
	size := 0
	for {
		e, err := w.peek(ctx, len(batch) == 0)
		if err != nil {
			return nil, err
		}
		if e == nil {
			return batch, nil
		}
		if e.Err != nil {
			if len(batch) > 0 {
				return batch, nil
			}
			return nil, fmt.Errorf("event of %s at revision %d: %w", e.Ref, e.Revision, e.Err)
		}
		if len(batch) > 0 && size+len(e.Object) > maxBytes {
			return batch, nil
		}
		w.pop()
		batch = append(batch, e)
		size += len(e.Object)
	}
}

// peek returns the next event without consuming it; with block it waits
// for one, else it returns nil when none is pending.
func (w *Watcher) peek(ctx context.Context, block bool) (*Event, error) {
	if w.bi < len(w.backlog) {
		return w.backlog[w.bi], nil
	}
	if w.backlog != nil {
		w.backlog, w.bi = nil, 0
	}
	if w.held != nil {
		return w.held, nil
	}
	// Pending events first: select picks at random among ready cases, and
	// what is already here should go out even if ctx just ended.
	select {
	case e := <-w.ch:
		w.held = e
		return e, nil
	default:
		if !block {
			return nil, nil
		}
	}
	select {
	case e := <-w.ch:
		w.held = e
		return e, nil
	case <-w.done:
		return nil, w.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pop consumes the event peek returned.
func (w *Watcher) pop() {
	if w.bi < len(w.backlog) {
		w.backlog[w.bi] = nil
		w.bi++
		return
	}
	w.held = nil
}

// Close unregisters the watcher; further events are not kept for it.
func (w *Watcher) Close() {
	w.hub.mu.Lock()
	w.hub.unregisterLocked(w)
	w.hub.mu.Unlock()
}
