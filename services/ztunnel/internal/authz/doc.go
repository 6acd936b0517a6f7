// Package authz is ztunnel's L4 authorization (DESIGN §5 "Inbound path"):
// it decides whether a connection to a local workload may proceed, from the
// istio.security.Authorization resources xds sends, with the semantics of
// Istio's ztunnel.
//
// # Decision
//
// Given the policies that apply to the destination workload:
//
//  1. any enforced DENY policy that matches rejects the connection;
//  2. otherwise, with no enforced ALLOW policy, it is allowed;
//  3. otherwise it is allowed only if an ALLOW policy matches.
//
// A policy matches when any of its groups matches (an Authorization without
// groups matches nothing); a group when all of its rules match; a rule when
// any of its matches matches; a match when every field that is set matches
// (any value of a positive field, no value of a not_ field). An empty match
// matches everything.
//
// A plaintext source has no principal, namespace or service account: a
// positive match on those fields fails and a not_ match on them succeeds,
// which is how PeerAuthentication STRICT (a DENY with not_principals
// presence) rejects plaintext. Principals are compared in Istio's form,
// "<td>/ns/<ns>/sa/<sa>", without the "spiffe://" scheme.
//
// Dry-run policies are never enforced; Evaluate reports separately what
// would have been decided had they been.
//
// # Compiled form
//
// Compile validates an Authorization once, when xds delivers it, and turns
// it into a compact Policy (netip.Prefix, uint16 ports, plain strings), so
// evaluation per connection allocates nothing and touches no proto
// accessors. Compile rejects what it cannot enforce exactly, naming the
// field (for an xDS NACK), instead of dropping values: dropping a value
// from a positive field would widen an ALLOW or narrow a DENY.
//
// # Deviations from Istio's ztunnel, on inputs our xds never emits
//
//   - ztunnel skips an empty match (it matches nothing there); DESIGN §5
//     defines it to match everything, and our xds relies on that for a DENY
//     rule whose every part was L7 ("deny everything it applies to").
//   - ztunnel silently drops a malformed address, a StringMatch without a
//     type and truncates ports above 65535; Compile rejects them.
//   - ztunnel compares a plaintext source's namespace as "" (so an exact ""
//     or a prefix "" namespace match would match it); here a source without
//     identity never matches a positive namespace match.
package authz
