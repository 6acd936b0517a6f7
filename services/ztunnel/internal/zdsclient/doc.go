// Package zdsclient is ztunnel's side of ZDS, the node-local protocol over
// which the CNI node agent hands enrolled pods' network namespaces to
// ztunnel (DESIGN §2, §5).
//
// The wire format is Istio's istio.workload.zds, so this client can attach
// to istio-cni as well as to Ambit's agent: one protobuf message per packet
// on a SOCK_SEQPACKET unix socket, the pod's netns fd travelling as
// SCM_RIGHTS with its AddWorkload.
//
// # Protocol
//
// The client connects and sends ZdsHello{version: V1}. The agent sends
// WorkloadRequests one at a time — add (with the netns fd), del, keep,
// snapshot_sent — and waits for a WorkloadResponse{ack} to each; the ack's
// error is the Handler's error text, or empty.
//
// # Snapshots
//
// Every connection starts with the agent's current set of pods (adds, and
// keeps for pods whose netns the agent no longer holds) ended by
// SnapshotSent. The client remembers which uids were added or kept on this
// connection before SnapshotSent and hands that set to Handler.Snapshot,
// which drops every other pod: a pod deleted while the agent was away is
// never deleted explicitly, it is simply absent from the next snapshot.
//
// # Reconnecting
//
// When the connection ends — the agent restarted, or sent something the
// client refuses — the client logs why and dials again with exponential
// backoff (capped at Options.RetryMax). Pods stay served meanwhile; the
// next snapshot reconciles them.
//
// # Untrusted input
//
// The agent's packets are parsed by [decodeRequest], a pure function with a
// fuzz target. Oversized or truncated packets, malformed messages and
// unexpected ancillary data close the connection with a logged reason;
// every received descriptor that is not handed to the Handler is closed.
package zdsclient
