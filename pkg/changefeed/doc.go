// Package changefeed carries every change of the resources in etcd to any
// number of consumers through the JetStream stream AMBIT_CHANGES, with
// nothing lost, duplicated or reordered across leader changes, restarts of
// etcd or NATS, and compaction (DESIGN §3).
//
// etcd is the truth. One Publisher (run by every config replica; one is
// elected) watches the resource prefix and publishes each event. Consumers
// (xds, ca, the gateway controller, the CNI agent) list etcd once, then
// follow the stream; whenever they cannot prove continuity they list again.
// etcd load does not grow with the number of consumer replicas beyond one
// listing each at start and after a break.
//
// # Layout
//
// Resources live at /ambit/v1/res/<group>/<kind>/<namespace>/<name> (group
// "core" for core kinds, namespace "_" for cluster-scoped ones); ParseKey
// and ResourceRef.Key convert. Their changes are published on subject
// ambit.changes.<group>.<kind>.<namespace>. NATS subject tokens cannot hold
// '.', '*', '>' or white space, and groups such as networking.istio.io have
// dots, so each token is escaped with EscapeToken: every byte outside
// [A-Za-z0-9_-] becomes %XX (upper-case hex), e.g.
// ambit.changes.networking%2Eistio%2Eio.ServiceEntry.default. The mapping
// is one-to-one (ParseSubject reverses it) and never produces the wildcard
// characters, so GroupKind.SubjectFilter (ambit.changes.<g>.<k>.*) selects
// one kind in all namespaces. Resync markers go to ambit.changes.resync,
// which no kind filter overlaps. The election lives under
// /ambit/election/changefeed, outside the watched prefix.
//
// # Positions and the chain
//
// One etcd revision can hold several events (a transaction over several
// keys), so an event's Position is (revision, index): index counts the
// resource events of that revision in the order etcd reports them, which
// is the same for every watcher, so any leader computes the same positions.
// Each envelope names the position of the message published before it
// (prev), and of the previous event of the same kind (kind_prev).
// Revisions are sparse, so counting cannot reveal a loss; the chain can. A
// consumer that listed at revision R accepts as first event anything whose
// prev is at or below R (that much is in its listing, and nothing was
// published in between), and from then on only an event whose prev equals
// the position it applied last. A consumer of all kinds checks prev; one
// limited to some kinds cannot see the others' messages and checks
// kind_prev per kind instead. When the stream holds no event of the kind
// since the last resync marker, the publisher names the later of that
// marker and the point from which the stream holds every message (read
// after the lookup, so retention racing it cannot hide an event): nothing
// of the kind was published since. On an empty stream (purged) it repeats
// prev, which is always sound and at worst costs a consumer one re-list.
//
// # Publisher
//
// Candidates campaign with clientv3/concurrency on a session whose lease
// has SessionTTL (default 5s). The leader's epoch is its election key's
// create revision, which strictly increases across leaders. On taking the
// lead (and after any error) it creates or updates the stream, reads the
// stream's last message (stream info for the last sequence, then that
// message) to learn its fence and position, and watches etcd from that
// revision inclusive, skipping positions it already finds published. A
// stream whose last message is a resync marker resumes after the marker's
// revision. An empty stream — the very first start, or a NATS server that
// lost its store — has no position at all: the leader publishes a resync
// marker at the current revision and continues after it; consumers that
// started on the empty stream listed anyway, any others re-list.
//
// Every publish carries Nats-Expected-Last-Sequence set to the sequence the
// leader last saw or published. That fence, not the session, is what
// keeps a deposed leader out: a leader paused after its last leadership
// check, or cut off from etcd before it noticed, fails its next publish as
// soon as anyone else published, re-reads the stream, finds a newer epoch
// and steps down. (The check runs before the dedup window in the server,
// and a "duplicate" acknowledgement is treated as fenced too, so a stale
// leader cannot slip an identical message through.) Nats-Msg-Id is
// "<revision> <key>" ("<revision> resync" for markers); an ambit-revision
// header repeats the revision for operators reading the stream. Publishes
// are synchronous, one per event: a pipelined publish would have to predict
// the sequence it lands at, and a successor publishing the same event
// could satisfy that prediction. The watch uses
// WithRequireLeader, WithPrevKV (deletes carry the last value) and
// progress notifications; a watch silent for two ProgressIntervals is
// restarted. If etcd compacted past the resume revision, the leader
// publishes a resync marker at the current revision and continues after it.
// A leader stopping cleanly revokes its lease, so its successor takes over
// at once; a killed one is replaced when its lease expires, within about
// one TTL (the failover test holds it to 2 × TTL).
//
// # Consumer
//
// A Consumer notes the stream's last sequence S, lists the watched
// prefixes at one revision R (paginated, every page at R), hands the
// snapshot to Handler.Reset, and reads from S+1: events at or below R are
// in the snapshot and dropped, the rest must continue the chain and go to
// Handler.Apply in order. A broken chain, a resync marker after R, an
// undecodable message or a handler error makes it re-list, after a random
// delay up to RelistJitter so replicas spread out.
//
// It reads through its own ephemeral pull consumer: no acks, in-memory,
// filtered to its kinds plus the marker subject, deleted when done (and by
// the server after InactiveThreshold otherwise). That is JetStream's ordered
// consumer pattern, implemented here rather than with
// jetstream.OrderedConsumer so that every recreation (after missed
// heartbeats, a NATS restart, a delivery-sequence gap) happens under the
// consumer's context and first checks the stream: the same stream
// continues at the next sequence without a re-list (the chain proves
// nothing was skipped); a recreated stream (NATS lost its store) is read
// from its start, where the new leader's resync marker decides; messages
// removed before they were read (purge, retention) force a re-list. The
// same check runs every CheckInterval, together with a check that the
// server-side consumer still exists and delivers, so a quiet consumer
// notices too. (In production each consumer's NATS user needs the
// JetStream API rights to create and delete consumers on AMBIT_CHANGES;
// only the config leader's user may publish to ambit.changes.>.)
//
// Decoding is lenient: envelopes keep unknown fields, messages of unknown
// types are skipped, and object bytes are passed through as stored (JSON),
// never decoded here, so older consumers survive a newer config during a
// rolling upgrade. LastAppliedRevision (and the
// ambit_changefeed_last_applied_revision gauge) is the revision the
// handler's state reflects.
//
// # Trace context
//
// etcd keeps no trace context, so the writer records it in the same
// transaction: TraceOp (or WithTrace) adds a put of TraceKey
// (/ambit/v1/res.trace) holding the W3C trace context of its span. The key
// sorts just before the resource prefix, so the leader watches the range
// [TraceKey, end of /ambit/v1/res/) and sees it beside the resource events
// of the same revision; listings of the prefix never include it. Unlike an
// annotation inside the object, this leaves stored objects untouched, works
// for deletes, and cannot go stale: a transaction without the put simply
// has no trace. The publisher starts a producer span "changefeed.publish"
// as a child of the writer's span, copies the writer's traceparent into the
// envelope, and injects its own span into the NATS headers (exact
// lower-case keys, through telemetry.NATSHeaderCarrier); the consumer's
// "changefeed.apply" span is a child of the publish span (falling back to
// the envelope's traceparent), and Handler.Apply receives its context. The
// write, publish and apply are thus one trace.
//
// # Telemetry
//
// Metrics (through the given MeterProvider): published events by type,
// publish errors by reason, publish duration, leadership and last published
// revision; per consumer, applied events, last applied revision, lag in
// revisions (behind the stream's newest event) and seconds (publish to
// apply), and re-lists by reason. Logs go to the given slog.Logger.
package changefeed
