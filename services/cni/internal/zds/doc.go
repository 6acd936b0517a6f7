// Package zds is the CNI node agent's side of ZDS, the node-local protocol
// that hands enrolled pods' network namespaces to ztunnel (DESIGN §2, §5).
//
// The wire format is Istio's istio.workload.zds, so Istio's ztunnel can
// attach to this agent and ours to istio-cni: one protobuf message per
// packet on a SOCK_SEQPACKET unix socket, the pod's netns fd travelling as
// SCM_RIGHTS with its AddWorkload.
//
// # Protocol
//
// ztunnel connects and sends ZdsHello{version: V1}. The server answers with
// its current set of enrolled workloads — a snapshot, not a replay of past
// events, so a pod added and deleted while ztunnel was away never reaches
// it — as AddWorkload messages, then SnapshotSent; ztunnel drops whatever
// it served that is not in the snapshot. Afterwards [Server.Add] and
// [Server.Del] are forwarded as they happen. Every request waits for its
// WorkloadResponse{ack} before the next is sent on that connection.
//
// # Several ztunnels
//
// During a ztunnel upgrade the old and the new process are connected at the
// same time. Adds go to the newest connection only (the new ztunnel takes
// over the pod's listeners, SO_REUSEPORT lets both overlap), deletes go to
// every connection. If the newest connection goes away, the next newest is
// brought up to date with the adds it missed, so a failed upgrade that
// leaves the old ztunnel running does not leave pods unserved.
//
// Each connection has its own FIFO of requests, appended under the server's
// lock in the same order as the set is changed; that keeps every ztunnel's
// view converging on the set even when Add and Del for one pod race.
//
// # Descriptors
//
// The server duplicates a workload's netns descriptor in [Server.Add] and
// keeps the duplicate while the workload is enrolled or a request for it is
// queued. The caller keeps ownership of its own descriptor and may close it
// any time after Add returns: a snapshot sent to a ztunnel that connects an
// hour later uses the server's duplicate, so a closed-and-reused fd number
// can never send another pod's namespace.
//
// # Untrusted input
//
// ztunnel's messages are parsed by [decodeHello] and [decodeResponse],
// which have fuzz targets. Packets larger than Options.MaxMessageBytes,
// malformed messages, responses nobody asked for and any ancillary data
// (received descriptors are closed at once) close the connection with a
// logged reason.
package zds
