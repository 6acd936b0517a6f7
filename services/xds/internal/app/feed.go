package app

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
	"github.com/ambitmesh/ambit/services/xds/internal/translate"
)

// feedHandler is the change-feed Handler of a replica: it runs each
// listing and event through the translator and applies the result to the
// cache, tagged with the feed revision, the event's publish time and its
// span (for push latency and the push span's parent).
//
// A listing replaces the cache's content; versions are content hashes, so
// a re-list that finds nothing new changes nothing and wakes no stream.
// One etcd revision can hold several events (a multi-key transaction);
// each is applied as it arrives with that revision, and the debounce
// normally pushes them together.
type feedHandler struct {
	tr    *translate.Translator
	cache *snapshot.Cache
	now   func() time.Time

	readyOnce sync.Once
	ready     chan struct{}
}

func newFeedHandler(tr *translate.Translator, cache *snapshot.Cache) *feedHandler {
	return &feedHandler{tr: tr, cache: cache, now: time.Now, ready: make(chan struct{})}
}

// Reset implements changefeed.Handler.
func (h *feedHandler) Reset(ctx context.Context, snap changefeed.Snapshot) error {
	deltas := h.tr.Reset(snap)
	h.cache.Replace(snapshot.Origin{At: h.now(), Span: trace.SpanContextFromContext(ctx)}, snap.Revision, deltas...)
	h.readyOnce.Do(func() { close(h.ready) })
	return nil
}

// Apply implements changefeed.Handler.
func (h *feedHandler) Apply(ctx context.Context, ev changefeed.Event) error {
	deltas := h.tr.Apply(ev)
	at := ev.PublishedAt
	if at.IsZero() {
		at = h.now()
	}
	h.cache.ApplyFrom(snapshot.Origin{At: at, Span: trace.SpanContextFromContext(ctx)}, ev.Position.Revision, deltas...)
	return nil
}

// Ready is closed once the first listing is in the cache.
func (h *feedHandler) Ready() <-chan struct{} { return h.ready }

func (h *feedHandler) synced() bool {
	select {
	case <-h.ready:
		return true
	default:
		return false
	}
}
