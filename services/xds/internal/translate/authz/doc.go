// Package authz converts AuthorizationPolicy and PeerAuthentication into
// the L4 istio.security.Authorization resources ztunnel enforces, following
// Istio's documented ambient behaviour. It is pure: inputs are model
// values, outputs are fresh protos, so it is table-tested without an index.
//
// # AuthorizationPolicy
//
// A policy reaches ztunnel only when ztunnel can enforce it: policies with
// targetRef/targetRefs are enforced by waypoints, CUSTOM and AUDIT actions
// and dry-run policies (annotation istio.io/dry-run) are not enforced by
// ztunnel, so none of those produce a resource (Enforced says why). Scope
// is WORKLOAD_SELECTOR with a selector (a selector without labels counts
// as none), else NAMESPACE, or GLOBAL in the root namespace; selector
// policies in the root namespace apply to matching workloads in every
// namespace. Workloads list only their WORKLOAD_SELECTOR policies;
// ztunnel applies the others by scope.
//
// Every rule becomes one group whose rules are, in order: the "to"
// operations (ports, notPorts), the "from" sources (principals,
// namespaces, serviceAccounts, ipBlocks and their not forms) and one rule
// per "when" condition on source.ip, source.namespace, source.principal,
// destination.ip or destination.port. Values "*", "*x" and "x*" become
// presence, suffix and prefix matches.
//
// ztunnel sees no HTTP, so attributes it cannot evaluate (hosts, methods,
// paths, requestPrincipals, remoteIpBlocks, their not forms and every
// other "when" key) are handled the way Istio documents, always erring on
// the restrictive side: in an ALLOW policy a rule that uses any of them is
// dropped entirely (it can never allow; a policy left without rules
// allows nothing), and in a DENY policy they are ignored, so the rule
// denies on its L4 part alone (a rule with only L7 parts denies
// everything it applies to). Convert reports the attributes it dropped.
//
// # PeerAuthentication
//
// ztunnel always accepts mTLS and cannot refuse it, so DISABLE behaves as
// PERMISSIVE; only STRICT needs enforcing, as a DENY of connections
// without a peer identity (not_principals: presence). Like Istio, one
// static policy "<root>/istio_converted_static_strict" (scope
// WORKLOAD_SELECTOR) exists whenever any PeerAuthentication does, and each
// workload whose effective mode is STRICT lists it. The effective mode
// comes from the oldest mesh policy (root namespace, no selector), then the
// oldest namespace policy (no selector), then the oldest selector policy
// in the workload's namespace, each overriding the one before unless
// UNSET. A selector policy whose port-level modes differ from its
// effective default is converted to its own DENY policy
// "<ns>/converted_peer_authentication_<name>" (Istio's naming; '_' cannot
// appear in Kubernetes names, so it never collides with a user policy)
// that carries both the default and the port exceptions, and the
// workloads it governs list it instead of the static one.
//
// Deviation: Istio ignores a port-level DISABLE under a STRICT mode that
// is inherited from the namespace or mesh (only PERMISSIVE exempts the
// port there); we treat DISABLE like PERMISSIVE everywhere, which is what
// the user asked for.
package authz
