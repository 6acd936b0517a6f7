package changefeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ambitmesh/ambit/pkg/telemetry"
	changefeedv1 "github.com/ambitmesh/ambit/proto/ambit/changefeed/v1"

	"github.com/ambitmesh/ambit/pkg/backoff"
)

// Object is one resource as stored in etcd.
type Object struct {
	// Ref is the parsed key.
	Ref ResourceRef
	// Value is the object exactly as stored (JSON). It is not decoded here:
	// consumers decode leniently, so an older consumer survives fields a
	// newer config wrote. For a delete it is the last value when etcd still
	// had it, else nil.
	Value []byte
	// CreateRevision and Version are etcd's; ModRevision is the revision of
	// the object's last change (for a delete event, the delete's revision).
	CreateRevision int64
	ModRevision    int64
	Version        int64
}

// Snapshot is the consistent state of the watched kinds at one revision.
type Snapshot struct {
	// Revision is the etcd revision the listing was read at.
	Revision int64
	// Objects, sorted by key.
	Objects []Object
}

// EventType is what happened to an object.
type EventType int

const (
	// EventPut is a create or update.
	EventPut EventType = iota + 1
	// EventDelete is a delete.
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one change after a snapshot.
type Event struct {
	Type     EventType
	Position Position
	Object   Object
	// LeaderEpoch of the publisher that published it.
	LeaderEpoch int64
	// PublishedAt is when the publisher saw the change.
	PublishedAt time.Time
	// StreamSequence is the message's JetStream sequence.
	StreamSequence uint64
	// Envelope is the message as decoded, unknown fields kept.
	Envelope *changefeedv1.Envelope
}

// Handler receives a consumer's view of etcd: a consistent initial state,
// then every later change in order. Calls come from one goroutine, never
// concurrently.
//
// Reset replaces the handler's whole state with the snapshot: it is called
// first and again after every re-list (a gap, a resync marker, a handler
// error), so the handler must drop whatever it held, not merge. Apply
// delivers the changes after the snapshot's revision, in (revision, index)
// order, each exactly once per Reset. An error from either makes the
// consumer re-list and call Reset again.
type Handler interface {
	Reset(ctx context.Context, snap Snapshot) error
	Apply(ctx context.Context, ev Event) error
}

// ConsumerOptions configures a Consumer.
type ConsumerOptions struct {
	// Etcd lists the state. Required.
	Etcd *clientv3.Client
	// NATS reads the stream. Required; it should reconnect forever.
	NATS *nats.Conn
	// Handler receives the state. Required.
	Handler Handler
	// Name identifies the consumer in logs and metrics (default
	// "changefeed").
	Name string
	// Kinds limits the consumer to these kinds: it lists only their
	// prefixes and subscribes only to their subjects. Empty means all.
	Kinds []GroupKind
	// ListPageSize is the etcd page size of a listing (default 500).
	ListPageSize int64
	// RelistJitter is the upper bound of the random delay before a re-list
	// caused by the feed (gap, resync marker, handler error), so replicas
	// that see the same marker do not hit etcd together (default 1s).
	RelistJitter time.Duration
	// RetryMin and RetryMax bound the jittered backoff after failures
	// (defaults 100ms and 5s).
	RetryMin, RetryMax time.Duration
	// Heartbeat is the idle heartbeat of the JetStream consumer; two missed
	// heartbeats make the consumer recreate its subscription (default 5s).
	Heartbeat time.Duration
	// CheckInterval is how often an idle consumer checks the stream's
	// identity and head, catching a stream that was recreated or purged
	// while nothing was published (default 5s).
	CheckInterval time.Duration
	// MaxPending is how many messages the consumer fetches ahead
	// (default 256).
	MaxPending int
	// RequestTimeout bounds each JetStream and etcd request (default 5s).
	RequestTimeout time.Duration
	// Telemetry: logs, spans, metrics.
	Telemetry
}

func (o *ConsumerOptions) setDefaults() error {
	switch {
	case o.Etcd == nil:
		return errors.New("changefeed: ConsumerOptions.Etcd is required")
	case o.NATS == nil:
		return errors.New("changefeed: ConsumerOptions.NATS is required")
	case o.Handler == nil:
		return errors.New("changefeed: ConsumerOptions.Handler is required")
	}
	for _, gk := range o.Kinds {
		if err := gk.Validate(); err != nil {
			return fmt.Errorf("changefeed: kind %v: %w", gk, err)
		}
	}
	if o.Name == "" {
		o.Name = "changefeed"
	}
	if o.ListPageSize == 0 {
		o.ListPageSize = 500
	}
	if o.RelistJitter == 0 {
		o.RelistJitter = time.Second
	}
	if o.RetryMin == 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax == 0 {
		o.RetryMax = 5 * time.Second
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 5 * time.Second
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = 5 * time.Second
	}
	if o.MaxPending == 0 {
		o.MaxPending = 256
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 5 * time.Second
	}
	o.Telemetry.setDefaults()
	return nil
}

// ConsumerStatus is a snapshot of a consumer's state.
type ConsumerStatus struct {
	// Synced is true once the first snapshot was handed to the handler.
	Synced bool
	// ListRevision is the revision of the last listing.
	ListRevision int64
	// LastAppliedRevision is the revision the handler's state reflects.
	LastAppliedRevision int64
	// StreamSequence is the last stream sequence read.
	StreamSequence uint64
	// Applied counts events applied since start; Relists counts listings
	// by reason (RelistStart, RelistGap, ...).
	Applied uint64
	Relists map[string]int
}

// Consumer keeps a Handler in step with etcd through the feed.
//
// It notes the stream's last sequence S, lists the watched prefixes at one
// revision R, hands the snapshot to Handler.Reset, then reads the stream
// from S+1: events at or below R are already in the snapshot and dropped;
// the rest must continue the chain (Envelope.prev, or kind_prev when Kinds
// is set) or the consumer re-lists.
type Consumer struct {
	opts    ConsumerOptions
	js      jetstream.JetStream
	log     *slog.Logger
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	m       *consumerMetrics
	filters []string
	attrs   metric.MeasurementOption

	lastApplied atomic.Int64
	head        atomic.Int64 // newest revision known on the stream
	pending     atomic.Uint64

	mu     sync.Mutex
	status ConsumerStatus
}

// NewConsumer checks opts and returns a consumer; Run starts it.
func NewConsumer(opts ConsumerOptions) (*Consumer, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(opts.NATS)
	if err != nil {
		return nil, fmt.Errorf("changefeed: jetstream: %w", err)
	}
	m, err := newConsumerMetrics(opts.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("changefeed: metrics: %w", err)
	}
	c := &Consumer{
		opts:   opts,
		js:     js,
		log:    opts.Logger.With("component", "changefeed-consumer", "consumer", opts.Name),
		tracer: opts.TracerProvider.Tracer(instrumentationName),
		prop:   opts.Propagator,
		m:      m,
		attrs:  metric.WithAttributes(attribute.String("consumer", opts.Name)),
		status: ConsumerStatus{Relists: map[string]int{}},
	}
	if len(opts.Kinds) == 0 {
		c.filters = []string{StreamSubjects}
	} else {
		seen := map[GroupKind]bool{}
		for _, gk := range opts.Kinds {
			if !seen[gk] {
				seen[gk] = true
				c.filters = append(c.filters, gk.SubjectFilter())
			}
		}
		c.filters = append(c.filters, ResyncSubject)
	}
	return c, nil
}

// LastAppliedRevision is the etcd revision the handler's state reflects:
// the snapshot's revision, then that of each applied event. 0 before the
// first snapshot.
func (c *Consumer) LastAppliedRevision() int64 { return c.lastApplied.Load() }

// Status returns the consumer's current state.
func (c *Consumer) Status() ConsumerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Relists = maps.Clone(c.status.Relists)
	return s
}

func (c *Consumer) update(f func(s *ConsumerStatus)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

// errRelist asks Run for a new listing; reason labels the metric.
type errRelist struct {
	reason string
	err    error
}

func (e *errRelist) Error() string { return "changefeed: re-list (" + e.reason + "): " + e.err.Error() }
func (e *errRelist) Unwrap() error { return e.err }

func relist(reason string, format string, args ...any) error {
	return &errRelist{reason: reason, err: fmt.Errorf(format, args...)}
}

// Run keeps the handler in step until ctx is done; it then returns nil.
// Call it once.
func (c *Consumer) Run(ctx context.Context) error {
	reg, err := c.opts.MeterProvider.Meter(instrumentationName).RegisterCallback(func(_ context.Context, o metric.Observer) error {
		applied := c.lastApplied.Load()
		o.ObserveInt64(c.m.lastRev, applied, c.attrs)
		lag := int64(0)
		if c.pending.Load() > 0 {
			lag = max(0, c.head.Load()-applied)
		}
		o.ObserveInt64(c.m.lagRevs, lag, c.attrs)
		return nil
	}, c.m.lastRev, c.m.lagRevs)
	if err != nil {
		return fmt.Errorf("changefeed: register metrics: %w", err)
	}
	defer func() { _ = reg.Unregister() }()

	bo := backoff.Backoff{Min: c.opts.RetryMin, Max: c.opts.RetryMax}
	reason := RelistStart
	for {
		err := c.session(ctx, reason)
		if ctx.Err() != nil {
			return nil
		}
		if rl, ok := errors.AsType[*errRelist](err); ok {
			reason = rl.reason
			c.log.Info("re-listing", "reason", reason, "err", rl.err)
			delay := jitterUpTo(c.opts.RelistJitter)
			if reason == RelistHandler {
				// A handler that keeps failing must not hammer etcd.
				delay = max(delay, bo.Next())
			} else {
				bo.Reset()
			}
			if backoff.Sleep(ctx, delay) != nil {
				return nil
			}
			continue
		}
		if c.Status().Synced {
			reason = RelistError
		}
		c.log.Warn("change feed consumer failed; retrying", "err", err)
		if backoff.Sleep(ctx, bo.Next()) != nil {
			return nil
		}
	}
}

// jitterUpTo returns a uniform duration in [0, d].
func jitterUpTo(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// chainState tracks what a consumer proved it has seen.
type chainState struct {
	listRev int64
	// last holds the position of the last applied event per chain: one
	// chain (the zero GroupKind) for all-kinds consumers, one per kind
	// otherwise. A chain
	// without entry is at its base: everything up to listRev is in the
	// snapshot.
	last map[GroupKind]Position
}

// session is one listing and the reading that follows it. It returns why
// the next listing is needed.
func (c *Consumer) session(ctx context.Context, reason string) error {
	stream, info, err := c.streamInfo(ctx)
	if err != nil {
		return err
	}
	startSeq := info.State.LastSeq + 1
	created := info.Created

	snap, err := c.list(ctx)
	if err != nil {
		return err
	}
	c.m.relists.Add(ctx, 1, metric.WithAttributes(attribute.String("consumer", c.opts.Name), attribute.String("reason", reason)))
	c.update(func(s *ConsumerStatus) { s.Relists[reason]++ })
	if err := c.reset(ctx, snap); err != nil {
		return &errRelist{reason: RelistHandler, err: err}
	}
	c.log.Debug("synced", "revision", snap.Revision, "objects", len(snap.Objects), "from_seq", startSeq)

	st := &chainState{listRev: snap.Revision, last: map[GroupKind]Position{}}
	rd := &reader{c: c, stream: stream, created: created, next: startSeq, st: st}
	defer rd.close()
	return rd.run(ctx)
}

func (c *Consumer) reset(ctx context.Context, snap Snapshot) error {
	ctx, span := c.tracer.Start(ctx, "changefeed.reset", trace.WithAttributes(
		attribute.String("ambit.consumer", c.opts.Name),
		attribute.Int64("ambit.revision", snap.Revision),
		attribute.Int("ambit.objects", len(snap.Objects))))
	defer span.End()
	if err := c.opts.Handler.Reset(ctx, snap); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return fmt.Errorf("changefeed: handler reset: %w", err)
	}
	c.lastApplied.Store(snap.Revision)
	c.head.Store(max(c.head.Load(), snap.Revision))
	c.update(func(s *ConsumerStatus) {
		s.Synced = true
		s.ListRevision = snap.Revision
		s.LastAppliedRevision = snap.Revision
	})
	return nil
}

// streamInfo waits for the stream to exist (the leading publisher creates
// it) and returns it with fresh info.
func (c *Consumer) streamInfo(ctx context.Context) (jetstream.Stream, *jetstream.StreamInfo, error) {
	bo := backoff.Backoff{Min: c.opts.RetryMin, Max: c.opts.RetryMax}
	for {
		// Stream fetches fresh info; CachedInfo is that answer.
		stream, err := bounded(ctx, c.opts.RequestTimeout, func(rc context.Context) (jetstream.Stream, error) {
			return c.js.Stream(rc, StreamName)
		})
		if err == nil {
			return stream, stream.CachedInfo(), nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		c.log.Debug("waiting for stream", "stream", StreamName, "err", err)
		if err := backoff.Sleep(ctx, bo.Next()); err != nil {
			return nil, nil, err
		}
	}
}

// list reads every watched prefix at one revision, page by page.
func (c *Consumer) list(ctx context.Context) (Snapshot, error) {
	prefixes := []string{ResourcePrefix}
	if len(c.opts.Kinds) > 0 {
		prefixes = prefixes[:0]
		for _, gk := range c.opts.Kinds {
			prefixes = append(prefixes, gk.KeyPrefix())
		}
		slices.Sort(prefixes)
		prefixes = slices.Compact(prefixes)
	}
	var snap Snapshot
	for _, prefix := range prefixes {
		key, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
		for {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(c.opts.ListPageSize)}
			if snap.Revision != 0 {
				opts = append(opts, clientv3.WithRev(snap.Revision))
			}
			resp, err := bounded(ctx, c.opts.RequestTimeout, func(rc context.Context) (*clientv3.GetResponse, error) {
				return c.opts.Etcd.Get(rc, key, opts...)
			})
			if err != nil {
				return Snapshot{}, fmt.Errorf("changefeed: list %s: %w", prefix, err)
			}
			if snap.Revision == 0 {
				snap.Revision = resp.Header.Revision
			}
			for _, kv := range resp.Kvs {
				ref, err := ParseKey(string(kv.Key))
				if err != nil {
					continue // not part of the feed (see Publisher)
				}
				snap.Objects = append(snap.Objects, Object{
					Ref: ref, Value: kv.Value,
					CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version,
				})
			}
			if !resp.More || len(resp.Kvs) == 0 {
				break
			}
			key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}
	return snap, nil
}

// reader consumes the stream after a listing. It runs its own ephemeral,
// unacknowledged, in-memory pull consumer and recreates it at the next
// stream sequence whenever delivery hiccups (missed heartbeats, consumer
// gone after a NATS restart, a delivery sequence gap) — the ordered
// consumer pattern, kept in this package so that every recreation checks
// the stream's identity and stays under ctx.
type reader struct {
	c       *Consumer
	stream  jetstream.Stream
	created time.Time
	next    uint64 // next stream sequence to read
	st      *chainState

	cons jetstream.Consumer
	it   jetstream.MessagesContext
	dseq uint64 // last delivery sequence of cons
	// checkedNext is next as of the last periodic check.
	checkedNext uint64
}

func (r *reader) close() {
	if r.it != nil {
		r.it.Stop()
		r.it = nil
	}
	if r.cons != nil {
		name := r.cons.CachedInfo().Name
		r.cons = nil
		// Best effort: an unreachable server drops it after InactiveThreshold.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = r.c.js.DeleteConsumer(ctx, StreamName, name)
		cancel()
	}
}

func (r *reader) run(ctx context.Context) error {
	c := r.c
	bo := backoff.Backoff{Min: c.opts.RetryMin, Max: c.opts.RetryMax}
	nextCheck := time.Now().Add(c.opts.CheckInterval)
	for {
		if r.it == nil {
			if err := r.open(ctx); err != nil {
				if _, ok := errors.AsType[*errRelist](err); ok || ctx.Err() != nil {
					return err
				}
				c.log.Debug("cannot subscribe; retrying", "err", err)
				if err := backoff.Sleep(ctx, bo.Next()); err != nil {
					return err
				}
				continue
			}
			nextCheck = time.Now().Add(c.opts.CheckInterval)
		}
		nctx, cancel := context.WithDeadline(ctx, nextCheck)
		msg, err := r.it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				nextCheck = time.Now().Add(c.opts.CheckInterval)
				if err := r.periodic(ctx); err != nil {
					return err
				}
				continue
			}
			c.log.Debug("subscription interrupted; resubscribing", "err", err, "next_seq", r.next)
			r.close()
			if err := backoff.Sleep(ctx, bo.Next()); err != nil {
				return err
			}
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			return relist(RelistDecode, "message metadata: %w", err)
		}
		if meta.Sequence.Consumer != r.dseq+1 {
			// A delivery was lost on the way: resubscribe at r.next.
			c.log.Debug("delivery gap; resubscribing", "want", r.dseq+1, "got", meta.Sequence.Consumer)
			r.close()
			continue
		}
		r.dseq = meta.Sequence.Consumer
		bo.Reset()
		if meta.Sequence.Stream < r.next {
			continue
		}
		r.next = meta.Sequence.Stream + 1
		c.pending.Store(meta.NumPending)
		c.update(func(s *ConsumerStatus) { s.StreamSequence = meta.Sequence.Stream })
		if err := r.process(ctx, msg, meta); err != nil {
			return err
		}
		if time.Now().After(nextCheck) {
			nextCheck = time.Now().Add(c.opts.CheckInterval)
			if err := r.periodic(ctx); err != nil {
				return err
			}
		}
	}
}

// periodic runs every CheckInterval: the stream check, then a check that
// the subscription still works. The client's own missed-heartbeat detection
// cannot be relied on here because Next returns at every check, restarting
// its heartbeat timer. A server-side consumer that is gone (NATS restarted)
// or that has messages for us but delivered none for a whole interval is
// replaced. Only a re-list is returned as an error.
func (r *reader) periodic(ctx context.Context) error {
	c := r.c
	if err := r.check(ctx); err != nil {
		if _, ok := errors.AsType[*errRelist](err); ok {
			return err
		}
		c.log.Debug("stream check failed", "err", err)
		return nil
	}
	if r.cons == nil {
		return nil
	}
	ci, err := bounded(ctx, c.opts.RequestTimeout, func(rc context.Context) (*jetstream.ConsumerInfo, error) {
		return r.cons.Info(rc)
	})
	stalled := err == nil && ci.NumPending > 0 && r.next == r.checkedNext
	r.checkedNext = r.next
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound) || stalled:
		c.log.Debug("subscription lost; resubscribing", "err", err, "stalled", stalled, "next_seq", r.next)
		r.close()
	case err != nil:
		c.log.Debug("consumer info failed", "err", err)
	}
	return nil
}

// open checks the stream and subscribes from r.next.
func (r *reader) open(ctx context.Context) error {
	c := r.c
	if err := r.check(ctx); err != nil {
		return err
	}
	cons, err := bounded(ctx, c.opts.RequestTimeout, func(rc context.Context) (jetstream.Consumer, error) {
		return r.stream.CreateConsumer(rc, jetstream.ConsumerConfig{
			Description:       "ambit change feed reader " + c.opts.Name,
			DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:       r.next,
			AckPolicy:         jetstream.AckNonePolicy,
			FilterSubjects:    c.filters,
			MemoryStorage:     true,
			Replicas:          1,
			InactiveThreshold: max(time.Minute, 10*c.opts.Heartbeat),
		})
	})
	if err != nil {
		return fmt.Errorf("changefeed: create stream consumer at %d: %w", r.next, err)
	}
	it, err := cons.Messages(
		jetstream.PullMaxMessages(c.opts.MaxPending),
		jetstream.PullHeartbeat(c.opts.Heartbeat),
		jetstream.PullExpiry(max(30*time.Second, 3*c.opts.Heartbeat)),
		jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		_ = c.js.DeleteConsumer(context.WithoutCancel(ctx), StreamName, cons.CachedInfo().Name)
		return fmt.Errorf("changefeed: subscribe: %w", err)
	}
	r.cons, r.it, r.dseq = cons, it, 0
	return nil
}

// check compares the stream with what this session started from: a
// recreated stream (NATS lost its store) is read from its start, where the
// new leader's resync marker decides whether to re-list; messages removed
// before they were read (purge, retention) force a re-list.
func (r *reader) check(ctx context.Context) error {
	c := r.c
	info, err := bounded(ctx, c.opts.RequestTimeout, func(rc context.Context) (*jetstream.StreamInfo, error) {
		return r.stream.Info(rc)
	})
	if err != nil {
		if isNotFound(err) {
			return fmt.Errorf("changefeed: stream %s is gone; waiting for the publisher: %w", StreamName, err)
		}
		return fmt.Errorf("changefeed: stream info: %w", err)
	}
	s := info.State
	if !info.Created.Equal(r.created) {
		c.log.Info("stream was recreated; reading it from its start", "created", info.Created, "was", r.created)
		r.created = info.Created
		r.next = 1
		if r.it != nil {
			r.close()
		}
		return nil
	}
	if s.LastSeq+1 < r.next {
		return relist(RelistStreamReset, "stream last sequence %d is behind our position %d", s.LastSeq, r.next-1)
	}
	if s.FirstSeq > r.next {
		return relist(RelistGap, "messages %d..%d left the stream before they were read", r.next, s.FirstSeq-1)
	}
	// Lag: the newest revision on the stream, when we are behind it.
	if s.LastSeq >= r.next {
		c.pending.Store(s.LastSeq - r.next + 1)
		if raw, err := bounded(ctx, c.opts.RequestTimeout, func(rc context.Context) (*jetstream.RawStreamMsg, error) {
			return r.stream.GetMsg(rc, s.LastSeq)
		}); err == nil {
			if env, err := decodeEnvelope(raw.Data); err == nil {
				c.head.Store(max(c.head.Load(), env.GetPosition().GetRevision()))
			}
		}
	} else {
		c.pending.Store(0)
	}
	return nil
}

func (r *reader) process(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata) error {
	c := r.c
	env, err := decodeEnvelope(msg.Data())
	if err != nil {
		return &errRelist{reason: RelistDecode, err: fmt.Errorf("stream sequence %d: %w", meta.Sequence.Stream, err)}
	}
	pos := positionFromProto(env.GetPosition())
	c.head.Store(max(c.head.Load(), pos.Revision))
	var typ EventType
	switch env.GetType() {
	case changefeedv1.EventType_EVENT_TYPE_RESYNC:
		if pos.Revision > r.st.listRev {
			return relist(RelistResync, "resync marker at revision %d (listed at %d)", pos.Revision, r.st.listRev)
		}
		return nil // the listing is at or after the marker
	case changefeedv1.EventType_EVENT_TYPE_PUT:
		typ = EventPut
	case changefeedv1.EventType_EVENT_TYPE_DELETE:
		typ = EventDelete
	default:
		// A type from a newer publisher: not ours to interpret.
		c.log.Debug("skipping message of unknown type", "type", env.GetType(), "seq", meta.Sequence.Stream)
		return nil
	}
	ref, err := ParseKey(env.GetKey())
	if err != nil {
		return &errRelist{reason: RelistDecode, err: fmt.Errorf("stream sequence %d: %w", meta.Sequence.Stream, err)}
	}
	if pos.Revision <= r.st.listRev {
		return nil // in the snapshot
	}

	// The chain: one for all kinds (prev), or one per kind (kind_prev).
	chain, prev := GroupKind{}, positionFromProto(env.GetPrev())
	if len(c.opts.Kinds) > 0 {
		chain, prev = ref.GroupKind(), positionFromProto(env.GetKindPrev())
	}
	if last, ok := r.st.last[chain]; ok {
		if prev != last {
			return relist(RelistGap, "event %s of %s follows %s, last applied %s", pos, ref, prev, last)
		}
	} else if prev.IsZero() || prev.Revision > r.st.listRev {
		return relist(RelistGap, "first event %s of %s after listing at %d follows %s", pos, ref, r.st.listRev, prev)
	}

	ev := Event{
		Type:     typ,
		Position: pos,
		Object: Object{
			Ref: ref, Value: env.GetObject(),
			CreateRevision: env.GetCreateRevision(), ModRevision: pos.Revision, Version: env.GetVersion(),
		},
		LeaderEpoch:    env.GetLeaderEpoch(),
		PublishedAt:    time.Unix(0, env.GetPublishedUnixNano()),
		StreamSequence: meta.Sequence.Stream,
		Envelope:       env,
	}
	if err := r.apply(ctx, msg, ev); err != nil {
		return &errRelist{reason: RelistHandler, err: err}
	}
	r.st.last[chain] = pos
	c.lastApplied.Store(pos.Revision)
	c.update(func(s *ConsumerStatus) {
		s.LastAppliedRevision = pos.Revision
		s.Applied++
	})
	c.m.applied.Add(ctx, 1, metric.WithAttributes(attribute.String("consumer", c.opts.Name), attribute.String("type", typ.String())))
	if env.GetPublishedUnixNano() > 0 {
		c.m.lagSeconds.Record(ctx, time.Since(ev.PublishedAt).Seconds(), c.attrs)
	}
	return nil
}

// apply calls the handler inside a span that continues the publisher's
// (from the NATS headers) or, failing that, the writer's (envelope).
func (r *reader) apply(ctx context.Context, msg jetstream.Msg, ev Event) error {
	c := r.c
	parent := c.prop.Extract(ctx, telemetry.NATSHeaderCarrier(msg.Headers()))
	if !trace.SpanContextFromContext(parent).IsValid() && ev.Envelope.GetTraceparent() != "" {
		parent = c.prop.Extract(ctx, propagation.MapCarrier{
			"traceparent": ev.Envelope.GetTraceparent(),
			"tracestate":  ev.Envelope.GetTracestate(),
		})
	}
	actx, span := c.tracer.Start(parent, "changefeed.apply",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", msg.Subject()),
			attribute.String("ambit.consumer", c.opts.Name),
			attribute.String("ambit.key", ev.Object.Ref.Key()),
			attribute.Int64("ambit.revision", ev.Position.Revision),
			attribute.String("ambit.event", ev.Type.String()),
		))
	defer span.End()
	if err := c.opts.Handler.Apply(actx, ev); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return fmt.Errorf("changefeed: handler apply %s at %s: %w", ev.Object.Ref, ev.Position, err)
	}
	return nil
}
