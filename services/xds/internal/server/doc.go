// Package server serves the Aggregated Discovery Service — incremental
// (delta) and state of the world — from a snapshot.Cache, to ztunnels
// (Istio's workload API) and Envoy waypoints and gateways (DESIGN §2).
//
// It uses go-control-plane's wire types only: that project's delta server
// keeps, per stream and type, a map of every resource name and version
// sent, which at 10,000 streams × 100,000 resources is what makes a control
// plane cost megabytes per proxy, and its caches hold snapshots per node.
// This package keeps per stream only what the protocol forces.
//
// # State per stream
//
// A stream is two goroutines: the gRPC handler, which is the only sender,
// and a receiver, which folds each request into the stream's state under a
// mutex and wakes the sender through a one-slot channel. The receiver never
// waits for the sender, so a client that keeps writing while not reading
// (many type URLs, a burst of ACKs) cannot deadlock the stream: requests
// are merged, never queued.
//
// Per type URL a delta stream keeps:
//   - for a wildcard subscription, the snapshot.TypeSnapshot it last sent
//     (two words; it pins only that type's index, shared with every other
//     stream at the same point) — no per-resource state;
//   - for explicit (on-demand) subscriptions, one entry per subscribed name
//     or alias: what it resolved to when last sent;
//   - the unanswered responses (nonce, generation, revision; at most 16),
//     the last accepted generation and revision, the standing NACK;
//   - transiently, initial_resource_versions until the first send.
//
// Memory per stream therefore does not grow with the mesh (see the memory
// test: about 12 KB of heap per wildcard stream, client side included, at
// 1k and at 20k resources, plus two goroutine stacks).
//
// # Pushing changes
//
// Run is the dispatcher. When the cache publishes a snapshot it waits out
// the Debounce window (default 100 ms: a push happens at most that long
// after a change and at most once per window; a fixed window rather than
// Istio's "quiet period" so continuous churn cannot postpone pushes), makes
// the newest snapshot the target, and marks the streams it concerns: the
// wildcard subscribers of each changed type and, through an index of
// subscribed keys, the on-demand subscribers of each changed name or
// alias. Nobody else is touched, so a change costs the changed keys times
// the interested streams. A woken stream computes its own response from
// what it last sent to the target (snapshot.TypeSnapshot.ChangedKeys:
// the changelog, or a structural diff when it is far behind) and always
// sends the newest state: a stream that cannot keep up skips intermediate
// generations instead of queueing them. Sends block on gRPC flow control
// only; nothing is buffered per stream beyond the response being sent.
//
// The target is read under the stream's mutex and the dispatcher stores it
// before taking that mutex to mark the stream, so a change is never missed
// between a stream's reading the target and being marked. Likewise
// subscriptions enter the key index before the stream's state, so a
// dispatch after the stream read its target always finds them.
//
// # Delta protocol
//
// The first request of a type without names, or with "*", is a wildcard
// subscription; "*" may be added and removed later. Explicit names may be
// resource names or aliases (an IP as "<network>/<ip>"): the response
// carries the resource under its own name with the subscribed aliases in
// Resource.aliases; a name that resolves to nothing is answered in
// removed_resources, as the xDS protocol prescribes for resources that do
// not exist. When an alias moves to another resource the old one is
// removed unless another subscription still holds it. Every subscription
// is answered, even an empty one, so a client always learns that the
// server has seen it.
//
// initial_resource_versions is honoured on the first request of a type:
// unchanged resources are not sent, names the client has that are gone are
// removed. Versions are content hashes (the translator's), identical on
// every replica, so a proxy reconnecting to another replica after a restart
// is sent nothing when nothing changed. system_version_info is the feed
// revision of the snapshot, also identical across replicas; nonces count
// per stream. A response that would exceed MaxResponseBytes (4 MiB, the
// usual client receive limit) is split; the proxy counts as having the
// revision once it accepted the last part.
//
// A NACK is recorded with its error_detail (syncz, distribution status,
// a metric, one log line) and nothing is resent: the stream considers the
// rejected generation sent and moves on with the next change, as Istio
// does, so a resource the proxy rejects is retried only in a new version.
// The NACK stands until a later response of the type is accepted.
//
// No stream is answered before Options.Ready is closed and the snapshot of
// that moment is the target: comparing a reconnecting proxy with an empty
// cache would tell it to delete everything.
//
// # State of the world
//
// StreamAggregatedResources serves clients that need SotW. Every response
// carries all of the client's resources of the type; the stream keeps the
// subscribed names and the last nonce per type. Requests with a stale nonce
// are ignored; a NACK is recorded and not answered with the same version.
//
// # Authentication
//
// An Authenticator establishes the caller from the connection (client
// certificate) or metadata (a bearer node credential, for Istio's ztunnel,
// which presents no certificate): Chain tries them in order. Then the
// caller may subscribe only on its own behalf: a node identity only for a
// Node naming that node (metadata NODE_NAME, or the id "ztunnel~<node>"), a
// workload identity (waypoint, gateway) only for its own namespace; the
// gateway controller's identity for any.
//
// # Distribution status and telemetry
//
// ProxyReports gives, per proxy, the revision it has for every type it
// subscribes to: the revision of the last accepted response, or, for a type
// with nothing unanswered and nothing to send, the revision of the newest
// snapshot the dispatcher has finished marking (a proxy that needs nothing
// from a change has that revision too, without a message). The proxystatus
// Publisher sends them to config.
//
// Each dispatch is a span, "xds.push", child of the first feed event it
// carries (and linked to the others), that ends when every stream it woke
// has answered (ACK, NACK, nothing to send, gone) or after
// PushSpanTimeout: with the feed's spans, an apply is one trace to the
// proxies' ACKs. Metrics: ambit_xds_streams, ambit_xds_pushes_total,
// ambit_xds_pushed_resources_total, ambit_xds_push_latency_seconds (feed
// event → response sent, per stream), ambit_xds_convergence_seconds (feed
// event → ACK, per stream), ambit_xds_nacks_total, ambit_xds_resources,
// ambit_xds_generation, ambit_xds_revision,
// ambit_xds_rejected_streams_total.
package server
