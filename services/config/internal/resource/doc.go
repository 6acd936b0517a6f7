// Package resource decodes, canonicalizes and validates the resources the
// config service accepts: Istio security and networking kinds, Gateway API
// kinds, the core Kubernetes kinds the mesh reads and certificates.k8s.io
// ClusterTrustBundle (how ambit-ca publishes its trust bundle). It holds no
// state and does no I/O; the API and storage layers build on it.
//
// # Kinds
//
// Kinds() builds the table of accepted kinds (group, kind, accepted
// versions, storage version, scope, Go spec type, defaults, rules). The
// table is created fresh on each call and is read-only, so the package has
// no mutable package-level state; the only package-level values are
// compiled regular expressions. See Kinds for the storage version of each
// kind and why converting to it is a rename.
//
// The ecosystem's own Go types hold the specs: istio.io/api protos for
// Istio kinds (v1alpha3/v1beta1 messages, which the v1 packages alias),
// sigs.k8s.io/gateway-api v1 structs for Gateway API kinds, k8s.io/api
// structs for core kinds and ClusterTrustBundle. A Secret has no spec in
// Kubernetes; its type/data/immutable live beside metadata, so the package
// keeps them in a SecretContent and stores them at the top level again.
//
// # Decoding
//
// Decode reads multi-document YAML, JSON documents and `kind: List`
// documents. It is strict the way the Kubernetes API server is with
// field validation set to Strict: unknown fields, duplicate fields and
// wrongly typed values are rejected. The stock decoders report such
// problems without a field path, so decoding is two-step: the JSON tree is
// first walked against the Go or proto schema (schema_struct.go,
// schema_proto.go), which reports every problem with its full path, and
// only then handed to encoding/json or protojson (DiscardUnknown=false).
//
// For compatibility with existing Istio YAML the proto walk also accepts
// what Istio's own decoder (the legacy jsonpb) accepts: original proto
// field names (jwks_uri) besides JSON names (jwksUri), enum numbers, quoted
// integers, and durations in Go syntax ("30ms", "5m") which it rewrites to
// protojson's seconds form. Field names of Kubernetes and Gateway API types
// match case-sensitively, unlike encoding/json, as in the API server.
//
// YAML is read as kubectl reads it (YAML 1.1 through sigs.k8s.io/yaml), so
// an unquoted `no` or `on` is a boolean and is rejected where a string is
// expected, with an error that says so.
//
// # Canonical form
//
// Decoded objects are canonical: apiVersion is the kind's storage version
// and the defaults the API server would write are filled in, because
// consumers of the change feed read the stored form and must not re-derive
// them:
//   - Gateway API: the CRD schema defaults (parentRef group/kind,
//     backendRef group/kind/weight, the catch-all PathPrefix "/" match,
//     header/query match type Exact, listener allowedRoutes from Same, TLS
//     mode Terminate, certificateRef kind Secret, redirect status 302, ...).
//     An empty list is defaulted like a missing one so that a stored object
//     decodes to itself.
//   - Service: type ClusterIP, sessionAffinity None, port protocol TCP,
//     targetPort = port. Cluster IPs are allocated by the store.
//   - Pod: serviceAccountName "default" (the mesh identity depends on it).
//   - Secret: type Opaque; stringData merged into data and dropped.
//   - Istio kinds: none (proto3 has no defaults); durations are rewritten to
//     seconds and 64-bit integers are written as strings, as protojson does.
//   - ClusterTrustBundle: none; trustBundle is stored exactly as given.
//
// Metadata is kept as given (the store owns uid, resourceVersion,
// generation and creationTimestamp). Status is kept as opaque compact JSON:
// it is written through a separate call by the controller that owns it.
// Only a Pod's status is typed, so the node agent's IPs and phase are
// checked.
//
// The stored form (Object.MarshalJSON) is {"apiVersion","kind","metadata",
// "spec","status"} (a Secret: type/data/immutable instead of spec/status),
// compact and deterministic. SpecEqual compares specs so the store bumps
// metadata.generation on spec changes only.
//
// # Validation
//
// Validate returns nil or an ErrorList of *FieldError. Every message has the
// form `<path>: <what is wrong> <value>[: <why>]`, for example
//
//	spec.rules[0].from[0].source.ipBlocks[1]: invalid CIDR "10.0.0.0/33": prefix length out of range
//
// and each FieldError carries its Type, Field and Value separately so the
// API layer can return structured details. Decode errors are wrapped in a
// *DocumentError naming the document (and List item), kind and name.
//
// The rules are written here, in Go, from the published behavior of Istio's
// validation and of the Gateway API CRDs' OpenAPI and CEL rules; no code is
// shared with either project. Where Ambit is deliberately stricter than
// Istio it is to refuse configuration that could never take effect:
//   - match values in AuthorizationPolicy may use "*" only alone, as a
//     prefix or as a suffix (Istio silently treats other "*" literally);
//   - ports in to.operation.ports and destination.port conditions must be
//     1-65535 (Istio also accepts 0, which matches nothing);
//   - a STATIC ServiceEntry needs endpoints or a workloadSelector;
//   - workload selectors and labels must be valid Kubernetes labels;
//   - the istio.io/dataplane-mode label must be "ambient" or "none";
//   - an HTTPS listener needs a tls section (the Gateway API documents it as
//     required; the CRD does not enforce it);
//   - Gateway IPAddress addresses must be IP addresses.
//
// Namespace existence is not checked unless ValidateOptions.NamespaceExists
// is set: the store should require the Namespace key in the same etcd
// transaction as the write (Object.NamespaceKey), which also closes the race
// with a concurrent namespace deletion. The object size cap
// (DefaultMaxObjectBytes, 512 KiB) applies to the stored JSON.
//
// ClusterTrustBundle follows the API server: with spec.signerName set the
// name must start with the signer name, '/' written as ':', then ':'
// (ambit-ca writes "ambit.io:<trust-domain>:bundle" for signer
// "ambit.io/<trust-domain>"); trustBundle holds PEM CERTIFICATE blocks
// without headers, each an X.509 CA certificate, none twice. Text between
// blocks is ignored as Kubernetes ignores it, but a block that does not
// decode is refused, where Kubernetes would skip it and silently lose a root.
//
// Pods: Ambit runs no containers, so a Pod's containers are optional (a Pod
// is a network identity placed on a node); when present their names and
// ports are checked.
package resource
