// Package translate turns the change feed into the resources of Istio's
// workload API — type.googleapis.com/istio.workload.Address and
// type.googleapis.com/istio.security.Authorization — as snapshot.Deltas
// for the xDS server (DESIGN §2, §5).
//
// # Pipeline
//
// Like Envoy Gateway's, the pipeline has stages with a value between each,
// each golden-tested on its own:
//
//	feed object (stored JSON)
//	  → model.Decoder: lenient decode into a compact IR value   (package model)
//	  → index.Index: incremental index, returns affected names  (package index)
//	  → workload.Builder / authz.Build: one resource per name    (packages workload, authz)
//	  → deterministic marshal, hash, diff against what was sent (this package)
//
// The index answers which output names a change may affect; stage 2
// rebuilds exactly those, and only resources whose bytes changed leave
// Apply. A change therefore costs work proportional to what it affects,
// not to the mesh (CP-1b: 100,000 workloads, 10,000 services).
//
// # Versions
//
// Resources are marshalled with proto.MarshalOptions{Deterministic: true}
// (map entries sorted; repeated fields are built in a defined order) and
// versioned by the first 8 bytes of the SHA-256 of those bytes, in hex.
// SHA-256 rather than a faster non-cryptographic hash because it needs no
// dependency, is hardware-accelerated, and its cost is small next to
// building and marshalling; 64 bits make a collision between two versions
// of one resource negligible. The same input gives the same bytes and
// versions on every replica running the same build, so a client
// reconnecting to another replica (initial_resource_versions) is sent
// nothing when nothing changed.
//
// # Deltas
//
// Reset returns the full state: one Delta per type listing every resource
// as an upsert, plus removals of what an earlier Reset or Apply emitted
// and no longer exists, so it can be applied on top of the previous state
// or to an empty cache alike. Apply returns only resources whose version
// changed and removals of those that disappeared, omitting empty Deltas.
// Names within a Delta are sorted.
//
// # Errors
//
// An object that cannot be decoded (not even leniently) is logged, counted
// (Invalid) and treated as absent, both in Reset and in Apply, so the
// output is always a function of the decodable state and incremental
// results equal a full rebuild. It never stops the pipeline: one bad
// object must not take the mesh's configuration down with it.
//
// A Translator is used from one goroutine (the change-feed handler).
package translate
