// Package certs holds the X.509 certificates of the workload identities
// whose pods run on this node (DESIGN §4, issue 8 "Certificates").
//
// ztunnel has no identity of its own on the data plane: it presents each
// local workload's certificate on that workload's behalf, obtained from the
// CA with the node credential through Istio's CreateCertificate and the
// ImpersonatedIdentity metadata. The CA grants only identities of pods
// assigned to the node, so the set of identities follows the pods: ZDS add
// calls Retain (and Prefetch, so the first connection does not wait), ZDS
// del calls Release, and an identity whose last pod left is dropped and no
// longer renewed.
//
// Each identity has one goroutine that fetches its certificate and renews
// it once RenewFraction of its lifetime has passed (half-life by default,
// as Istio). Every CSR of an identity comes from that goroutine, so
// concurrent first connections share one request. A renewal that fails is
// retried with jittered exponential backoff while the old certificate keeps
// being served; connections are never made to wait for a renewal.
//
// Each identity's *spiffe.Source carries its certificate and the trust
// bundles of the node credential; a bundle change (root rotation) is
// written into every source at once, so TLS configurations built with
// spiffe.ServerConfig/ClientConfig pick up both renewals and root
// rotations on their next handshake, without a restart.
package certs
