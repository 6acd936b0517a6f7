// Package index is stage 1 of the translation pipeline: an incremental
// in-memory index of the objects the workload API is built from, which
// answers, for every change, the set of output resource names it may have
// changed.
//
// Why names and not resources: the index only knows dependencies; stage 2
// (packages workload and authz) rebuilds each named resource from the
// index and the translator keeps it only when its hash differs, so an
// over-approximated name set costs a rebuild, never a wrong output, while
// a missed name would be a stale resource. The dependencies tracked are:
//
//   - a workload (Pod, WorkloadEntry) depends on itself, its namespace's
//     labels, the waypoint it uses, the Services/ServiceEntries selecting
//     it, the selector policies and PeerAuthentications selecting it, and
//     the mesh and namespace PeerAuthentications;
//   - a ServiceEntry's inline endpoints depend on their ServiceEntry, its
//     namespace, waypoints and policies selecting the ServiceEntry's
//     labels (as Istio);
//   - a service host ("<ns>/<host>") depends on the Services and
//     ServiceEntries defining it, its namespace and its waypoint;
//   - an Authorization on its policy, and a converted PeerAuthentication
//     also on the namespace and mesh PeerAuthentications.
//
// Work per change is proportional to what it affects: workloads are
// indexed by (namespace, label key, value), so a selector is evaluated by
// scanning its rarest pair's workloads; selecting objects (Services,
// ServiceEntries, policies) are indexed under their first selector pair,
// so the selectors matching a workload are found from its own labels; a
// namespace or Gateway change is looked up through reverse sets (workloads
// and services per namespace, users per waypoint). Only when a derived
// value actually changes (a namespace's enrollment, waypoint or network
// label; a level's effective PeerAuthentication mode; a waypoint's
// address) are dependents touched. Changes of the mesh-wide
// PeerAuthentication mode touch every workload, as they change every one.
//
// An Index is not safe for concurrent use; the translator owns it.
package index
