// Package snapshot is the contract between the translator (change feed →
// xDS resources) and the delta xDS server: the translator hands over Deltas
// of finished resources, the server streams them.
//
// Resources are immutable once built and marshalled once, so any number of
// streams share the same bytes; the Cache keeps every type's resources in a
// structure where a change costs work proportional to what changed, not to
// the size of the mesh, and tells streams which names changed since the
// generation they last saw, so no stream keeps a copy of every name.
package snapshot

import "google.golang.org/protobuf/types/known/anypb"

// Resource is one xDS resource in its final wire form.
type Resource struct {
	// Name is the resource name on the wire (a workload uid,
	// "<namespace>/<hostname>" for a service, "<namespace>/<policy>" for an
	// Authorization, ...).
	Name string
	// Version is a hash of the deterministic marshalling of Body: identical
	// on every replica of the same version for the same input.
	Version string
	// Body is the marshalled resource.
	Body *anypb.Any
	// Aliases are further names the resource answers to in on-demand
	// subscriptions, e.g. "<network>/<ip>" for a workload or service
	// address.
	Aliases []string
}

// Delta is one change to the resources of one type.
type Delta struct {
	TypeURL  string
	Upserts  []*Resource
	Removals []string
}
