package changefeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/ambitmesh/ambit/pkg/telemetry"
	changefeedv1 "github.com/ambitmesh/ambit/proto/ambit/changefeed/v1"

	"github.com/ambitmesh/ambit/pkg/backoff"
)

// PublisherOptions configures a Publisher.
type PublisherOptions struct {
	// Etcd is the client the publisher campaigns, watches and reads with.
	// Required. Closing it kills the publisher without resigning (its lease
	// runs out after SessionTTL), which is how the failover tests kill it.
	Etcd *clientv3.Client
	// NATS is the connection to publish on. Required. It should reconnect
	// forever (nats.MaxReconnects(-1)): the publisher rides out NATS
	// restarts by retrying.
	NATS *nats.Conn
	// ID is this candidate's election value, shown to operators
	// (default: hostname-pid-random).
	ID string
	// SessionTTL is the etcd lease of the leader's session (default 5s,
	// whole seconds; etcd raises TTLs below its minimum, 2s with default
	// timing). A killed leader is replaced within about one TTL.
	SessionTTL time.Duration
	// Stream sizes AMBIT_CHANGES; the leader creates or updates it.
	Stream StreamOptions
	// PublishTimeout bounds one publish (default 5s).
	PublishTimeout time.Duration
	// ProgressInterval is how often the leader asks etcd for watch progress;
	// a watch that answers neither events nor progress for two intervals is
	// restarted (default 10s).
	ProgressInterval time.Duration
	// RetryMin and RetryMax bound the jittered backoff after failures
	// (defaults 100ms and 5s).
	RetryMin, RetryMax time.Duration
	// Telemetry: logs, spans, metrics.
	Telemetry

	// hooks are test seams.
	hooks publisherHooks
}

type publisherHooks struct {
	// beforePublish runs after the leadership check and right before the
	// fenced publish of every event: the window a paused process (GC pause,
	// SIGSTOP) sits in. The split-brain test blocks here.
	beforePublish func(env *changefeedv1.Envelope)
}

func (o *PublisherOptions) setDefaults() error {
	if o.Etcd == nil {
		return errors.New("changefeed: PublisherOptions.Etcd is required")
	}
	if o.NATS == nil {
		return errors.New("changefeed: PublisherOptions.NATS is required")
	}
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = fmt.Sprintf("%s-%d-%08x", host, os.Getpid(), rand.Uint32())
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 5 * time.Second
	}
	if o.SessionTTL < time.Second {
		return fmt.Errorf("changefeed: SessionTTL %s is below 1s", o.SessionTTL)
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = 5 * time.Second
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = 10 * time.Second
	}
	if o.RetryMin == 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax == 0 {
		o.RetryMax = 5 * time.Second
	}
	o.Stream.setDefaults()
	if err := o.Stream.validate(); err != nil {
		return err
	}
	o.Telemetry.setDefaults()
	return nil
}

// PublisherStatus is a snapshot of a publisher's state.
type PublisherStatus struct {
	// Leader is true while this publisher holds the election.
	Leader bool
	// Epoch is the leader epoch of the current or last term (the create
	// revision of its election key).
	Epoch int64
	// LeaderSince is when the current term started.
	LeaderSince time.Time
	// LastPosition and LastSequence are the position and stream sequence of
	// the last message this publisher published or found on taking the lead.
	LastPosition Position
	LastSequence uint64
	// WatchRevision is the last etcd revision the watch confirmed (events
	// or progress notifications).
	WatchRevision int64
	// Terms counts the times this publisher became leader.
	Terms int
	// Published counts messages this publisher published (events and
	// resync markers); Fenced counts publishes the stream rejected because
	// another leader had published since.
	Published uint64
	Fenced    uint64
}

// Publisher is a candidate for the change feed leader. Run campaigns; the
// leader watches etcd and publishes every resource change to AMBIT_CHANGES.
// Any number of publishers may run (one per config replica): one leads,
// the others wait to take over.
type Publisher struct {
	opts   PublisherOptions
	js     jetstream.JetStream
	log    *slog.Logger
	tracer trace.Tracer
	m      *publisherMetrics
	prop   propagation.TextMapPropagator

	mu     sync.Mutex
	status PublisherStatus
}

// NewPublisher checks opts and returns a publisher; Run starts it.
func NewPublisher(opts PublisherOptions) (*Publisher, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(opts.NATS)
	if err != nil {
		return nil, fmt.Errorf("changefeed: jetstream: %w", err)
	}
	m, err := newPublisherMetrics(opts.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("changefeed: metrics: %w", err)
	}
	return &Publisher{
		opts:   opts,
		js:     js,
		log:    opts.Logger.With("component", "changefeed-publisher", "id", opts.ID),
		tracer: opts.TracerProvider.Tracer(instrumentationName),
		m:      m,
		prop:   opts.Propagator,
	}, nil
}

// Status returns the publisher's current state.
func (p *Publisher) Status() PublisherStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// IsLeader reports whether this publisher currently leads.
func (p *Publisher) IsLeader() bool { return p.Status().Leader }

func (p *Publisher) update(f func(s *PublisherStatus)) {
	p.mu.Lock()
	f(&p.status)
	p.mu.Unlock()
}

var (
	// errDeposed: the stream holds a message of a newer leader.
	errDeposed = errors.New("changefeed: deposed by a newer leader")
	// errFenced: the stream rejected a publish because someone else
	// published since this leader last looked.
	errFenced = errors.New("changefeed: publish fenced")
	// errLostLeadership: the session ended.
	errLostLeadership = errors.New("changefeed: leadership lost")
)

// Run campaigns for the lead and, while leader, publishes the feed. It
// returns nil once ctx is done (resigning if it leads, so a successor takes
// over at once) and an error only when it cannot go on (the etcd client was
// closed). Call it once.
func (p *Publisher) Run(ctx context.Context) error {
	reg, err := p.opts.MeterProvider.Meter(instrumentationName).RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := p.Status()
		leader := int64(0)
		if st.Leader {
			leader = 1
		}
		attrs := metric.WithAttributes(attribute.String("publisher", p.opts.ID))
		o.ObserveInt64(p.m.leader, leader, attrs)
		o.ObserveInt64(p.m.lastRev, st.LastPosition.Revision, attrs)
		return nil
	}, p.m.leader, p.m.lastRev)
	if err != nil {
		return fmt.Errorf("changefeed: register metrics: %w", err)
	}
	defer func() { _ = reg.Unregister() }()

	bo := backoff.Backoff{Min: p.opts.RetryMin, Max: p.opts.RetryMax}
	for {
		err := p.term(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if p.opts.Etcd.Ctx().Err() != nil {
			return fmt.Errorf("changefeed: etcd client closed: %w", err)
		}
		switch {
		case errors.Is(err, errDeposed), errors.Is(err, errLostLeadership):
			p.log.Warn("stepped down", "err", err)
			bo.Reset()
		default:
			p.log.Warn("change feed term failed", "err", err)
		}
		if backoff.Sleep(ctx, bo.Next()) != nil {
			return nil
		}
	}
}

// term is one candidacy: a fresh session, a campaign, and leadership until
// the session ends or the stream proves another leader took over.
func (p *Publisher) term(ctx context.Context) error {
	ttl := int64(math.Ceil(p.opts.SessionTTL.Seconds()))
	// The lease is granted with ctx so a down etcd cannot block shutdown;
	// the session itself runs on a context that outlives ctx so that Close
	// can still revoke the lease after ctx is cancelled.
	lease, err := p.opts.Etcd.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("changefeed: grant session lease: %w", err)
	}
	session, err := concurrency.NewSession(p.opts.Etcd,
		concurrency.WithLease(lease.ID), concurrency.WithTTL(int(ttl)),
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return fmt.Errorf("changefeed: etcd session: %w", err)
	}
	// Closing revokes the lease, so a successor is elected at once after a
	// graceful stop or a step-down. A killed publisher (closed client)
	// cannot revoke: its successor waits for the lease to expire.
	defer func() { _ = session.Close() }()

	leadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-session.Done():
			cancel()
		case <-leadCtx.Done():
		}
	}()

	election := concurrency.NewElection(session, ElectionPrefix)
	if err := election.Campaign(leadCtx, p.opts.ID); err != nil {
		if leadCtx.Err() != nil && ctx.Err() == nil {
			return errLostLeadership
		}
		return fmt.Errorf("changefeed: campaign: %w", err)
	}
	epoch := election.Rev()
	// Campaign does not notice a session that expired while it waited:
	// confirm our key still stands, under our lease.
	resp, err := p.opts.Etcd.Get(leadCtx, election.Key())
	if err != nil {
		return fmt.Errorf("changefeed: confirm leadership: %w", err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision != epoch || clientv3.LeaseID(resp.Kvs[0].Lease) != session.Lease() {
		return errLostLeadership
	}

	p.update(func(s *PublisherStatus) {
		s.Leader, s.Epoch, s.LeaderSince = true, epoch, time.Now()
		s.Terms++
	})
	defer p.update(func(s *PublisherStatus) { s.Leader = false })
	p.log.Info("leading the change feed", "epoch", epoch, "session_ttl", p.opts.SessionTTL)

	bo := backoff.Backoff{Min: p.opts.RetryMin, Max: p.opts.RetryMax}
	for {
		err := p.lead(ctx, leadCtx, session, epoch)
		if leadCtx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errLostLeadership
		}
		if errors.Is(err, errDeposed) {
			return err
		}
		if errors.Is(err, errFenced) {
			// Someone published since we looked: re-read the stream at
			// once; that tells whether we were deposed.
			p.log.Warn("publish fenced; re-reading the stream", "err", err)
			continue
		}
		p.log.Warn("publishing interrupted; resuming from the stream", "err", err)
		if backoff.Sleep(leadCtx, bo.Next()) != nil {
			continue
		}
	}
}

// cursor is the leader's position in the feed.
type cursor struct {
	epoch int64
	// seq is the stream's last sequence as this leader knows it: the fence.
	seq uint64
	// last is the position of the last message on the stream (prev of the
	// next one); zero if unknown.
	last Position
	// covered: every event at or before it is on the stream or behind a
	// resync marker; events at or before it are skipped.
	covered Position
	// floor is the position of the newest resync marker; per-kind chains
	// never reach back past it.
	floor Position
	// kinds caches the position of the last event of each kind.
	kinds map[GroupKind]Position
}

// endOfRevision is the index a resync marker covers up to.
const endOfRevision = math.MaxInt32

// lead runs one stretch of leadership: read the stream's head, then watch
// etcd from there and publish. It returns on any error; term decides
// whether to go on.
func (p *Publisher) lead(ctx, leadCtx context.Context, session *concurrency.Session, epoch int64) error {
	stream, err := bounded(leadCtx, p.opts.PublishTimeout, func(c context.Context) (jetstream.Stream, error) {
		return EnsureStream(c, p.js, p.opts.Stream)
	})
	if err != nil {
		return err
	}
	cur, err := p.readHead(leadCtx, stream, epoch)
	if err != nil {
		return err
	}
	p.update(func(s *PublisherStatus) { s.LastPosition, s.LastSequence = cur.last, cur.seq })

	var from int64 // first revision to watch
	switch {
	case cur.covered.IsZero():
		// Empty stream (first start, or NATS lost its store): nothing
		// proves what consumers have seen, so publish a marker at the
		// current revision and go on from there. Consumers that started
		// on an empty stream listed anyway; others re-list.
		rev, err := p.currentRevision(leadCtx)
		if err != nil {
			return err
		}
		if err := p.publishMarker(ctx, leadCtx, session, cur, rev); err != nil {
			return err
		}
		from = rev + 1
	case cur.covered.Index == endOfRevision:
		from = cur.covered.Revision + 1
	default:
		// Inclusive: the revision may hold more events than were published.
		from = cur.covered.Revision
	}

	for {
		err := p.watch(ctx, leadCtx, session, stream, cur, from)
		if !errors.Is(err, errCompacted) {
			return err
		}
		rev, err := p.currentRevision(leadCtx)
		if err != nil {
			return err
		}
		p.log.Warn("etcd compacted past the feed's position; publishing a resync marker",
			"last_published", cur.last, "revision", rev)
		if err := p.publishMarker(ctx, leadCtx, session, cur, rev); err != nil {
			return err
		}
		from = rev + 1
	}
}

var errCompacted = errors.New("changefeed: etcd compacted past the watch revision")

// readHead learns the fence and resume point from the stream's last
// message, and the newest resync marker.
func (p *Publisher) readHead(ctx context.Context, stream jetstream.Stream, epoch int64) (*cursor, error) {
	cur := &cursor{epoch: epoch, kinds: map[GroupKind]Position{}}
	info, err := bounded(ctx, p.opts.PublishTimeout, func(c context.Context) (*jetstream.StreamInfo, error) { return stream.Info(c) })
	if err != nil {
		return nil, fmt.Errorf("changefeed: stream info: %w", err)
	}
	cur.seq = info.State.LastSeq
	if info.State.Msgs == 0 || cur.seq == 0 {
		return cur, nil
	}
	raw, err := bounded(ctx, p.opts.PublishTimeout, func(c context.Context) (*jetstream.RawStreamMsg, error) { return stream.GetMsg(c, cur.seq) })
	if isNotFound(err) {
		// The last message was deleted: its position is unknown.
		return cur, nil
	}
	if err != nil {
		return nil, fmt.Errorf("changefeed: read last message %d: %w", cur.seq, err)
	}
	env, err := decodeEnvelope(raw.Data)
	if err != nil {
		p.log.Warn("last message of the stream does not decode; treating the stream as empty", "seq", cur.seq, "err", err)
		return cur, nil
	}
	if env.GetLeaderEpoch() > epoch {
		return nil, fmt.Errorf("%w: stream message %d has epoch %d, ours is %d", errDeposed, cur.seq, env.GetLeaderEpoch(), epoch)
	}
	cur.last = positionFromProto(env.GetPosition())
	cur.covered = cur.last
	if env.GetType() == changefeedv1.EventType_EVENT_TYPE_RESYNC {
		cur.covered.Index = endOfRevision
		cur.floor = cur.last
		return cur, nil
	}
	raw, err = bounded(ctx, p.opts.PublishTimeout, func(c context.Context) (*jetstream.RawStreamMsg, error) {
		return stream.GetLastMsgForSubject(c, ResyncSubject)
	})
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("changefeed: read last resync marker: %w", err)
	default:
		if m, err := decodeEnvelope(raw.Data); err == nil {
			cur.floor = positionFromProto(m.GetPosition())
		}
	}
	return cur, nil
}

func (p *Publisher) currentRevision(ctx context.Context) (int64, error) {
	resp, err := bounded(ctx, p.opts.PublishTimeout, func(c context.Context) (*clientv3.GetResponse, error) {
		return p.opts.Etcd.Get(c, TraceKey, clientv3.WithCountOnly())
	})
	if err != nil {
		return 0, fmt.Errorf("changefeed: read etcd revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// watch publishes every resource event from revision from on.
func (p *Publisher) watch(ctx, leadCtx context.Context, session *concurrency.Session, stream jetstream.Stream, cur *cursor, from int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(leadCtx))
	defer cancel()
	wch := p.opts.Etcd.Watch(wctx, TraceKey,
		clientv3.WithRange(clientv3.GetPrefixRangeEnd(ResourcePrefix)),
		clientv3.WithRev(from), clientv3.WithPrevKV(), clientv3.WithProgressNotify())

	tick := time.NewTicker(p.opts.ProgressInterval)
	defer tick.Stop()
	lastHeard := time.Now()
	// Events of one revision arrive in one response (etcd does not split a
	// revision unless asked to fragment); rev/idx carry over regardless.
	var rev int64
	var idx int32
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-wch:
		case <-tick.C:
			if time.Since(lastHeard) > 2*p.opts.ProgressInterval {
				return fmt.Errorf("changefeed: etcd watch silent for %s", time.Since(lastHeard).Round(time.Millisecond))
			}
			rctx, rcancel := context.WithTimeout(wctx, p.opts.ProgressInterval)
			_ = p.opts.Etcd.RequestProgress(rctx)
			rcancel()
			continue
		}
		if !ok {
			if err := leadCtx.Err(); err != nil {
				return err
			}
			return errors.New("changefeed: etcd watch closed")
		}
		lastHeard = time.Now()
		if p.log.Enabled(leadCtx, slog.LevelDebug) {
			var hdr int64
			if resp.Header != nil {
				hdr = resp.Header.Revision
			}
			p.log.Debug("watch response", "events", len(resp.Events), "progress", resp.IsProgressNotify(),
				"revision", hdr, "canceled", resp.Canceled, "err", resp.Err(), "covered", cur.covered, "seq", cur.seq)
		}
		if resp.CompactRevision != 0 {
			return fmt.Errorf("%w: watch from %d, compacted at %d", errCompacted, from, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("changefeed: etcd watch: %w", err)
		}
		if resp.Header != nil && resp.Header.Revision > 0 && (resp.IsProgressNotify() || len(resp.Events) > 0) {
			p.update(func(s *PublisherStatus) { s.WatchRevision = max(s.WatchRevision, resp.Header.Revision) })
		}
		evs := resp.Events
		for i := 0; i < len(evs); {
			r := evs[i].Kv.ModRevision
			j := i
			for j < len(evs) && evs[j].Kv.ModRevision == r {
				j++
			}
			batch := evs[i:j]
			i = j
			if r != rev {
				rev, idx = r, 0
			}
			var carrier propagation.MapCarrier
			for _, ev := range batch {
				if string(ev.Kv.Key) == TraceKey && ev.Type == mvccpb.PUT {
					carrier = traceCarrier(ev.Kv.Value)
				}
			}
			for _, ev := range batch {
				key := string(ev.Kv.Key)
				if !strings.HasPrefix(key, ResourcePrefix) {
					continue
				}
				ref, err := ParseKey(key)
				if err != nil {
					// Not part of the feed; consumers skip it in listings
					// too. Only config writes here and it validates keys.
					p.log.Warn("skipping malformed resource key", "key", key, "revision", r)
					continue
				}
				pos := Position{Revision: r, Index: idx}
				idx++
				if pos.Compare(cur.covered) <= 0 {
					continue
				}
				if err := p.publishEvent(ctx, leadCtx, session, stream, cur, pos, ref, ev, carrier); err != nil {
					return err
				}
			}
		}
	}
}

// checkLeader is the cheap leadership check before each publish. It is not
// what keeps a deposed leader out (a process can pause right after it);
// the fence is.
func checkLeader(leadCtx context.Context, session *concurrency.Session) error {
	select {
	case <-session.Done():
		return errLostLeadership
	default:
	}
	if leadCtx.Err() != nil {
		return errLostLeadership
	}
	return nil
}

func (p *Publisher) publishEvent(ctx, leadCtx context.Context, session *concurrency.Session, stream jetstream.Stream,
	cur *cursor, pos Position, ref ResourceRef, ev *clientv3.Event, carrier propagation.MapCarrier) error {
	gk := ref.GroupKind()
	kindPrev, err := p.kindPrev(leadCtx, stream, cur, gk)
	if err != nil {
		return err
	}
	env := &changefeedv1.Envelope{
		Position:    pos.proto(),
		Prev:        cur.last.proto(),
		KindPrev:    kindPrev.proto(),
		LeaderEpoch: cur.epoch,
		Key:         ref.Key(),
	}
	typ := "put"
	if ev.Type == mvccpb.DELETE {
		typ = "delete"
		env.Type = changefeedv1.EventType_EVENT_TYPE_DELETE
		if ev.PrevKv != nil {
			env.Object = ev.PrevKv.Value
			env.CreateRevision = ev.PrevKv.CreateRevision
			env.Version = ev.PrevKv.Version
		}
	} else {
		env.Type = changefeedv1.EventType_EVENT_TYPE_PUT
		env.Object = ev.Kv.Value
		env.CreateRevision = ev.Kv.CreateRevision
		env.Version = ev.Kv.Version
	}
	parent := context.Background()
	if len(carrier) > 0 {
		env.Traceparent = carrier.Get("traceparent")
		env.Tracestate = carrier.Get("tracestate")
		parent = p.prop.Extract(parent, carrier)
	}
	spanCtx, span := p.tracer.Start(parent, "changefeed.publish",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", ref.Subject()),
			attribute.String("ambit.key", env.Key),
			attribute.Int64("ambit.revision", pos.Revision),
			attribute.String("ambit.event", typ),
			attribute.Int64("ambit.leader_epoch", cur.epoch),
		))
	defer span.End()
	err = p.publish(ctx, spanCtx, leadCtx, session, cur, env, ref.Subject(), msgID(pos.Revision, env.Key), typ)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	cur.kinds[gk] = pos
	return nil
}

// kindPrev names the last event of kind gk before the one being published.
func (p *Publisher) kindPrev(ctx context.Context, stream jetstream.Stream, cur *cursor, gk GroupKind) (Position, error) {
	if pos, ok := cur.kinds[gk]; ok {
		return pos, nil
	}
	// First event of the kind in this stretch: the stream's last message of
	// the kind is it, unless a resync marker came later.
	raw, err := bounded(ctx, p.opts.PublishTimeout, func(c context.Context) (*jetstream.RawStreamMsg, error) {
		return stream.GetLastMsgForSubject(c, gk.SubjectFilter())
	})
	switch {
	case isNotFound(err):
	case err != nil:
		return Position{}, fmt.Errorf("changefeed: read last %s message: %w", gk, err)
	default:
		if env, err := decodeEnvelope(raw.Data); err == nil {
			pos := positionFromProto(env.GetPosition())
			if pos.Compare(cur.floor) > 0 && pos.Compare(cur.last) <= 0 {
				cur.kinds[gk] = pos
				return pos, nil
			}
		}
	}
	// No message of the kind since the marker: none was published after
	// the marker, nor after the point from which the stream holds every
	// message (read after the lookup above, so that retention racing it
	// only moves that point later). The later of the two is the answer.
	start, err := p.streamStart(ctx, stream)
	if err != nil {
		return Position{}, err
	}
	pos := cur.last // always sound: nothing was published since it
	if !start.IsZero() {
		pos = start
		if cur.floor.Compare(pos) > 0 {
			pos = cur.floor
		}
		if pos.Compare(cur.last) > 0 {
			pos = cur.last
		}
	}
	cur.kinds[gk] = pos
	return pos, nil
}

// streamStart is the position after which the stream holds every message
// published: the prev of its first message (or the first message itself
// when it has no prev). With an empty stream that is the last position.
func (p *Publisher) streamStart(ctx context.Context, stream jetstream.Stream) (Position, error) {
	info, err := bounded(ctx, p.opts.PublishTimeout, func(c context.Context) (*jetstream.StreamInfo, error) { return stream.Info(c) })
	if err != nil {
		return Position{}, fmt.Errorf("changefeed: stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		return Position{}, nil
	}
	raw, err := bounded(ctx, p.opts.PublishTimeout, func(c context.Context) (*jetstream.RawStreamMsg, error) {
		return stream.GetMsg(c, info.State.FirstSeq)
	})
	if isNotFound(err) {
		return Position{}, nil
	}
	if err != nil {
		return Position{}, fmt.Errorf("changefeed: read first message: %w", err)
	}
	env, err := decodeEnvelope(raw.Data)
	if err != nil {
		return Position{}, nil
	}
	if prev := positionFromProto(env.GetPrev()); !prev.IsZero() {
		return prev, nil
	}
	return positionFromProto(env.GetPosition()), nil
}

func (p *Publisher) publishMarker(ctx, leadCtx context.Context, session *concurrency.Session, cur *cursor, rev int64) error {
	pos := Position{Revision: rev}
	env := &changefeedv1.Envelope{
		Position:    pos.proto(),
		Prev:        cur.last.proto(),
		LeaderEpoch: cur.epoch,
		Type:        changefeedv1.EventType_EVENT_TYPE_RESYNC,
	}
	spanCtx, span := p.tracer.Start(leadCtx, "changefeed.resync",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.Int64("ambit.revision", rev), attribute.Int64("ambit.leader_epoch", cur.epoch)))
	defer span.End()
	if err := p.publish(ctx, spanCtx, leadCtx, session, cur, env, ResyncSubject, resyncMsgID(rev), "resync"); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	cur.covered = Position{Revision: rev, Index: endOfRevision}
	cur.floor = pos
	clear(cur.kinds)
	return nil
}

// publish sends one fenced message and advances the cursor on success.
func (p *Publisher) publish(ctx, spanCtx, leadCtx context.Context, session *concurrency.Session,
	cur *cursor, env *changefeedv1.Envelope, subject, id, typ string) error {
	if err := checkLeader(leadCtx, session); err != nil {
		return err
	}
	env.PublishedUnixNano = time.Now().UnixNano()
	data, err := proto.Marshal(env)
	if err != nil {
		return fmt.Errorf("changefeed: encode envelope: %w", err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	p.prop.Inject(spanCtx, telemetry.NATSHeaderCarrier(msg.Header))
	msg.Header["ambit-revision"] = []string{strconv.FormatInt(env.GetPosition().GetRevision(), 10)}

	if h := p.opts.hooks.beforePublish; h != nil {
		h(env)
	}
	// The publish runs on ctx, not leadCtx: once past the leadership check
	// it goes out even if the session ends meanwhile, and the fence decides.
	pctx, cancel := context.WithTimeout(ctx, p.opts.PublishTimeout)
	defer cancel()
	start := time.Now()
	ack, err := p.js.PublishMsg(pctx, msg,
		jetstream.WithMsgID(id),
		jetstream.WithExpectStream(StreamName),
		jetstream.WithExpectLastSequence(cur.seq))
	p.m.duration.Record(ctx, time.Since(start).Seconds())
	switch {
	case err != nil && isWrongLastSequence(err):
		p.m.errors.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "fenced")))
		p.update(func(s *PublisherStatus) { s.Fenced++ })
		return fmt.Errorf("%w: expected last sequence %d: %w", errFenced, cur.seq, err)
	case err != nil:
		p.m.errors.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "nats")))
		return fmt.Errorf("changefeed: publish %s: %w", id, err)
	case ack.Duplicate:
		// Not ours to have published: an identical message landed while
		// the stream's last sequence still matched our fence.
		p.m.errors.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "duplicate")))
		p.update(func(s *PublisherStatus) { s.Fenced++ })
		return fmt.Errorf("%w: message %q already on the stream at %d", errFenced, id, ack.Sequence)
	}
	cur.seq = ack.Sequence
	cur.last = positionFromProto(env.GetPosition())
	cur.covered = cur.last
	p.m.published.Add(ctx, 1, metric.WithAttributes(attribute.String("type", typ)))
	p.update(func(s *PublisherStatus) {
		s.LastPosition, s.LastSequence = cur.last, cur.seq
		s.Published++
	})
	return nil
}

// bounded runs f with a context that ends after d.
func bounded[T any](ctx context.Context, d time.Duration, f func(context.Context) (T, error)) (T, error) {
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return f(c)
}
