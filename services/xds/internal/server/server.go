package server

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

// Defaults.
const (
	DefaultDebounce         = 100 * time.Millisecond
	DefaultMaxResponseBytes = 4 << 20
	DefaultMaxSubscriptions = 65536
	DefaultPushSpanTimeout  = 30 * time.Second
	// maxTypesPerStream bounds the type URLs one stream may subscribe to.
	maxTypesPerStream = 64
	// maxInflight bounds the unanswered responses remembered per type;
	// older ones are forgotten (their ACK then only counts if a newer one
	// is ACKed too).
	maxInflight = 16
	// maxPendingPushes bounds the pushes a stream that cannot keep up holds;
	// the oldest are released (their spans stop waiting for it).
	maxPendingPushes = 16
	// maxDirtyKeys bounds the keys remembered as changed for one on-demand
	// type before the stream re-evaluates all its subscriptions instead.
	maxDirtyKeys      = 1024
	maxNackErrorBytes = 1024
)

// Options configure a Server.
type Options struct {
	// Cache is what the server serves. Required.
	Cache *snapshot.Cache
	// Authenticator decides who calls. Required.
	Authenticator Authenticator
	// Debounce is how long the dispatcher collects changes before pushing
	// them: a push happens at most Debounce after a change and at most once
	// per Debounce. Zero pushes every change at once (tests).
	Debounce time.Duration
	// MaxResponseBytes splits large delta responses (a full sync of a big
	// type) into several, each below about this size (default 4 MiB, the
	// default gRPC receive limit of most clients).
	MaxResponseBytes int
	// MaxSubscriptions bounds the explicit names one stream may subscribe
	// to per type (default 65536).
	MaxSubscriptions int
	// ReplicaID names this replica in responses (control_plane.identifier).
	ReplicaID string
	// PushSpanTimeout ends a push span that some stream never answered
	// (default 30s).
	PushSpanTimeout time.Duration
	// Ready, when set, holds every stream's first response until it is
	// closed: the cache must hold the feed's state before anything is
	// compared with what a reconnecting proxy has, or it would be told to
	// delete everything. Requests are taken meanwhile. Nil: ready at once.
	Ready <-chan struct{}

	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Now is the clock (tests).
	Now func() time.Time
}

// Server serves the Aggregated Discovery Service, delta and state of the
// world, from a snapshot.Cache. See the package documentation.
type Server struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer

	opts   Options
	cache  *snapshot.Cache
	log    *slog.Logger
	tracer trace.Tracer
	m      *metrics
	cp     *corev3.ControlPlane

	// target is the snapshot streams send; settled the newest one whose
	// interested streams have all been told. A caught-up stream has
	// everything of settled (see deltaType.caughtUp).
	target  atomic.Pointer[snapshot.Snapshot]
	settled atomic.Pointer[snapshot.Snapshot]

	reg registry
	// serving is closed once Options.Ready is and the dispatcher has made
	// the snapshot of that moment the target; streams answer only then.
	serving chan struct{}

	streamsMu sync.Mutex
	streams   map[uint64]proxyStream
	nextID    atomic.Uint64
}

// New checks o and returns a server; Run must run for pushes to happen.
func New(o Options) (*Server, error) {
	switch {
	case o.Cache == nil:
		return nil, errors.New("server: Options.Cache is required")
	case o.Authenticator == nil:
		return nil, errors.New("server: Options.Authenticator is required")
	case o.Debounce < 0:
		return nil, errors.New("server: Options.Debounce must not be negative")
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if o.PushSpanTimeout <= 0 {
		o.PushSpanTimeout = DefaultPushSpanTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TracerProvider == nil {
		o.TracerProvider = tracenoop.NewTracerProvider()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = metricnoop.NewMeterProvider()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		opts:    o,
		cache:   o.Cache,
		log:     o.Logger.With("component", "xds-server"),
		tracer:  o.TracerProvider.Tracer(instrumentationName),
		streams: map[uint64]proxyStream{},
		reg:     newRegistry(),
		serving: make(chan struct{}),
	}
	if o.Ready == nil {
		close(s.serving)
	}
	if o.ReplicaID != "" {
		s.cp = &corev3.ControlPlane{Identifier: o.ReplicaID}
	}
	cur := o.Cache.Current()
	s.target.Store(cur)
	s.settled.Store(cur)
	m, err := newMetrics(o.MeterProvider, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// Register adds the Aggregated Discovery Service to a gRPC server.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s)
}

// Settled returns the newest snapshot every interested stream was told of.
func (s *Server) Settled() *snapshot.Snapshot { return s.settled.Load() }

// Run dispatches new snapshots to the streams until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	changed, cancel := s.cache.Subscribe()
	defer cancel()
	defer s.m.reg.Unregister() //nolint:errcheck // nothing to do about it
	var timer *time.Timer
	if s.opts.Debounce > 0 {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
	}
	// A snapshot applied before Run started is dispatched at once.
	s.dispatch()
	ready := s.opts.Ready
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ready:
			// The cache holds the feed's state now: make it the target
			// before any stream compares against it.
			ready = nil
			s.dispatch()
			close(s.serving)
			continue
		case <-changed:
		}
		if timer != nil {
			// Collect what else changes within the window; the cache
			// coalesces, so only the newest snapshot is dispatched.
			timer.Reset(s.opts.Debounce)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		}
		s.dispatch()
	}
}

// dispatch hands the cache's current snapshot to the streams it concerns:
// every wildcard stream of a changed type, and the on-demand streams
// subscribed to a changed name or alias. Work is proportional to the
// changed keys and the interested streams; the others are not touched.
func (s *Server) dispatch() {
	next := s.cache.Current()
	prev := s.target.Load()
	if next == prev {
		return
	}
	// Streams read target when woken, so it must be in place before any
	// is; settled follows once all are (see deltaType.caughtUp).
	s.target.Store(next)
	p := s.newPush(prev, next)

	notified := 0
	s.reg.mu.Lock()
	for _, url := range next.TypeURLs() {
		nt, pt := next.Type(url), prev.Type(url)
		if nt.Same(pt) {
			continue
		}
		for w := range s.reg.wildcard[url] {
			if w.notify(url, "", p) {
				notified++
			}
		}
		byKey := s.reg.keys[url]
		if len(byKey) == 0 {
			continue
		}
		for _, key := range nt.ChangedKeys(pt) {
			for _, w := range byKey[key] {
				if w.notify(url, key, p) {
					notified++
				}
			}
		}
	}
	s.reg.mu.Unlock()
	s.settled.Store(next)
	p.span.SetAttributes(attribute.Int("xds.streams_notified", notified))
	p.done() // the dispatcher's own hold
}

func (s *Server) newPush(prev, next *snapshot.Snapshot) *push {
	at, links := next.OriginsSince(prev.Generation(), 16)
	ctx := context.Background()
	var opts []trace.SpanStartOption
	if len(links) > 0 {
		// The first feed event is the parent: the push continues its trace.
		ctx = trace.ContextWithRemoteSpanContext(ctx, links[0])
		for _, l := range links[1:] {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: l}))
		}
	}
	opts = append(opts, trace.WithAttributes(
		attribute.Int64("xds.generation", int64(next.Generation())),
		attribute.Int64("xds.revision", next.Revision()),
	))
	_, span := s.tracer.Start(ctx, "xds.push", opts...)
	p := &push{gen: next.Generation(), rev: next.Revision(), at: at, span: span}
	p.remaining.Store(1)
	p.timer = time.AfterFunc(s.opts.PushSpanTimeout, func() { p.end(true) })
	return p
}

// watcher is a stream as the dispatcher sees it. notify marks a type (and
// for on-demand subscriptions the key) as changed and wakes the stream; it
// reports whether p is new to the stream, which then holds it (push.attach)
// until it answered.
type watcher interface {
	notify(typeURL, key string, p *push) bool
}

// registry indexes streams by what they watch. Lock order: registry, then
// a stream's mutex; streams never hold their own mutex while calling it.
type registry struct {
	mu       sync.Mutex
	wildcard map[string]map[watcher]struct{}
	// keys maps type → name or alias → subscribed streams; usually one or
	// a few, so a slice.
	keys map[string]map[string][]watcher
}

func newRegistry() registry {
	return registry{wildcard: map[string]map[watcher]struct{}{}, keys: map[string]map[string][]watcher{}}
}

func (r *registry) setWildcard(url string, w watcher, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := r.wildcard[url]
	if on {
		if ws == nil {
			ws = map[watcher]struct{}{}
			r.wildcard[url] = ws
		}
		ws[w] = struct{}{}
		return
	}
	delete(ws, w)
	if len(ws) == 0 {
		delete(r.wildcard, url)
	}
}

func (r *registry) addKeys(url string, w watcher, keys []string) {
	if len(keys) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	byKey := r.keys[url]
	if byKey == nil {
		byKey = map[string][]watcher{}
		r.keys[url] = byKey
	}
	for _, k := range keys {
		if !slices.Contains(byKey[k], w) {
			byKey[k] = append(byKey[k], w)
		}
	}
}

func (r *registry) removeKeys(url string, w watcher, keys []string) {
	if len(keys) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	byKey := r.keys[url]
	for _, k := range keys {
		ws := slices.DeleteFunc(byKey[k], func(x watcher) bool { return x == w })
		if len(ws) == 0 {
			delete(byKey, k)
		} else {
			byKey[k] = ws
		}
	}
	if len(byKey) == 0 {
		delete(r.keys, url)
	}
}

// proxyStream is a stream as status and debug endpoints see it.
type proxyStream interface {
	streamID() uint64
	proxyInfo() proxyInfo
	connected() time.Time
	// sync describes the stream; settled is Server.settled read before
	// the call.
	sync(settled *snapshot.Snapshot) ProxySync
	dump() map[string][]DumpedResource
}

func (s *Server) addStream(ps proxyStream) {
	s.streamsMu.Lock()
	s.streams[ps.streamID()] = ps
	s.streamsMu.Unlock()
}

func (s *Server) removeStream(ps proxyStream) {
	s.streamsMu.Lock()
	delete(s.streams, ps.streamID())
	s.streamsMu.Unlock()
}

// snapshotStreams lists the open streams.
func (s *Server) snapshotStreams() []proxyStream {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	out := make([]proxyStream, 0, len(s.streams))
	for _, ps := range s.streams {
		out = append(out, ps)
	}
	return out
}

// StreamCount is the number of open streams.
func (s *Server) StreamCount() int {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	return len(s.streams)
}

// authenticatePrincipal runs the Authenticator before anything is read
// from the stream.
func (s *Server) authenticatePrincipal(ctx context.Context) (Principal, error) {
	principal, err := s.opts.Authenticator.Authenticate(ctx)
	if err != nil {
		s.m.rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "unauthenticated")))
		return Principal{}, err
	}
	return principal, nil
}

// authorizeNode reads the first request's node and checks that the caller
// subscribes on its own behalf.
func (s *Server) authorizeNode(ctx context.Context, principal Principal, node *corev3.Node) (proxyInfo, error) {
	proxy, err := parseNode(node)
	if err != nil {
		s.m.rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "invalid_node")))
		return proxyInfo{}, err
	}
	if err := authorizeProxy(principal, proxy); err != nil {
		s.m.rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "permission_denied")))
		s.log.Warn("refused an xDS stream for another proxy", "identity", principal.Identity.String(), "proxy", proxy.ID, "error", err)
		return proxyInfo{}, err
	}
	return proxy, nil
}

// awaitReady blocks until the server may answer, the stream ends, or its
// receiver fails.
func (s *Server) awaitReady(ctx context.Context, recvErr <-chan error) error {
	select {
	case <-s.serving:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case err := <-recvErr:
		return err
	}
}

// signal wakes a stream's sender without blocking; wakes coalesce.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
