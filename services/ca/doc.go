// Package ca is ambit-ca, the mesh's SPIFFE certificate authority
// (DESIGN §1, §4): it signs node and workload X.509-SVIDs through Istio's
// CSR API, bootstraps nodes with join tokens, owns the trust bundle and
// rotates the root. Replicas are stateless and interchangeable; etcd holds
// the state and the change feed feeds the pod index.
//
// # APIs (one TLS gRPC listener, default :15012)
//
//   - istio.v1.auth.IstioCertificateService/CreateCertificate, the
//     generated types of istio.io/api/security/v1alpha1, so Istio's ztunnel
//     can use this CA unchanged: csr, validity_duration (seconds), metadata
//     ImpersonatedIdentity; cert_chain leaf first, root last.
//   - ambit.ca.v1.NodeBootstrapService: CreateJoinToken (admin),
//     ExchangeJoinToken (the token is the credential), IssueNodeToken
//     (node certificate → bearer token).
//   - ambit.ca.v1.TrustBundleService/Watch: the bundle as a stream, with
//     acknowledgements.
//   - ambit.ca.v1.RotationService: StartRotation, GetRotationStatus,
//     AdvanceRotation (admin).
//
// # Who may call what
//
// Callers authenticate with a client certificate of the trust domain, or —
// with no certificate, as Istio's ztunnel does — with
// "authorization: Bearer <node token>". A node token is an ES256 JWT that
// the CA mints for a caller holding a node certificate (IssueNodeToken),
// for at most 24h and never beyond that certificate; it stands for that
// node and nothing more, cannot mint another token, and its public key is
// published in the trust bundle so xds can verify it too (package bearer).
//
// A caller may obtain its own identity; a node also the workload
// identities of pods assigned to it, confirmed by a linearizable etcd read
// whenever the feed-fed index has no answer (package authz). Everything
// else is PermissionDenied with an audit line (caller, how it
// authenticated, requested identity, reason) and a count in
// ambit_ca_requests_denied_total{reason}. CSRs are checked before signing
// (package signer): P-256/P-384 or RSA ≥ 2048, one URI SAN equal to the
// identity, no CA bit; failures are InvalidArgument. Each caller has a
// token bucket (--rate-limit, --rate-burst).
//
// # Bootstrap
//
// The first administrator comes from the key material itself:
// `ambit-ca issue-admin --out DIR [--name NAME]` reads etcd with the
// key-encryption key (the same secret every replica holds, so it grants
// nothing new) and writes admin.crt, admin.key and bundle.pem, the files
// ambitctl uses. It creates the CA's material if no replica has started.
// Nodes then join with `ambitctl node token create <node>` and
// ExchangeJoinToken; control-plane services can join the same way
// (CreateJoinToken with identity spiffe://<td>/ambit/<component>) or run
// with operator-provided certificates.
//
// # Key material (package keystore)
//
// One JSON document at /ambit/v1/_ca/state holds the trusted authorities
// with their keys sealed by AES-256-GCM under the key-encryption key
// (--kek-file or AMBIT_CA_KEK), the active authority, the bundle version,
// the rotation in progress and the token key. First boot creates it in an
// etcd transaction guarded by "absent", so replicas starting together end
// with one root; later changes are compare-and-swaps, and every replica
// watches the key. The root is generated (ECDSA P-256, 10 years) or, on
// first boot, taken from --signing-cert-file/--signing-key-file
// (+ --root-cert-file) for an operator's intermediate.
//
// # Rotation (package rotation) and distribution (package bundle)
//
// IDLE → ROOT_ADDED (new root in the bundle, old one signs) → SIGNING_NEW
// (once every connected Watch stream on every live replica acknowledged
// the bundle; each replica reissues its own certificate) → IDLE (old root
// dropped automatically when the longest-lived certificate it signed has
// expired, or forced). Replicas publish their watchers' acknowledgements
// under /ambit/v1/_ca/replicas/<replica> with a lease; the rotation sums
// them. Other bundle channels plug in as bundle.Publisher.
//
// # The bundle as a resource (package clustertrustbundle)
//
// With --config-servers, every replica also writes the bundle through the
// config API as the certificates.k8s.io ClusterTrustBundle
// "ambit.io:<td>:bundle" (signer "ambit.io/<td>", roots in PEM, version in
// the annotation ambit.io/bundle-version), authenticating with its serving
// certificate; config lets spiffe://<td>/ambit/ca write that signer's
// bundles and nothing else. Any replica may write: each reads first, skips
// when the stored version is newer or equal with the same roots, and
// otherwise applies with the stored resourceVersion as precondition, so
// replicas never regress the bundle and usually only one writes. Writes are
// retried with backoff while config is unreachable. The rotation's
// advance gate still counts Watch acknowledgements only.
//
// # Telemetry
//
// Spans per request (ca.CreateCertificate with ca.sign, join, rotation)
// under otelgrpc's server spans; metrics ambit_ca_certificates_issued_total
// {kind,api}, ambit_ca_requests_denied_total{reason},
// ambit_ca_sign_duration_seconds (granted requests, receipt to response),
// ambit_ca_root_expiry_seconds{authority,active}; /healthz, /readyz and
// /metrics on --admin-addr (default :15014).
package ca
