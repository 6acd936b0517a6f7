// Package model is the translator's intermediate representation: compact,
// immutable Go values for the stored objects the workload API is built
// from (Namespace, Pod, Service, ServiceEntry, WorkloadEntry,
// AuthorizationPolicy, PeerAuthentication, Gateway), and the lenient
// decoding from their stored JSON.
//
// Why a separate form instead of the Kubernetes and Istio Go types: the
// index holds every workload of the mesh (CP-1b: 100,000 pods), and a
// decoded corev1.Pod costs several kilobytes, most of it fields the
// workload API never reads. A Workload keeps only what translation reads,
// and repeated strings (namespaces, label keys and values, nodes, service
// accounts) are interned as Atoms, so a thousand replicas of one
// Deployment share one copy of their labels' text.
//
// Decoding is lenient (DESIGN §3): unknown fields are ignored, so an older
// xds survives objects written by a newer config during a rolling upgrade.
// Core and Gateway API kinds go through encoding/json into the upstream Go
// types; Istio kinds through protojson with DiscardUnknown into istio.io/api
// messages. An object that decodes but cannot produce a workload (a pod
// without an IP, or one that has terminated) decodes to nil: for the
// translator it does not exist.
//
// Values are never mutated after Decode returns, so the index can compare
// an object's old and new versions and share them freely.
package model
