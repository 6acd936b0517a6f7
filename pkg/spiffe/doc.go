// Package spiffe names Ambit's identities and builds the mutual-TLS
// configurations that authenticate them.
//
// # Identities
//
// Every certificate in an Ambit mesh carries exactly one SPIFFE ID (DESIGN §4),
// in one of these shapes and no other:
//
//	spiffe://<td>/ns/<namespace>/sa/<service-account>   workload (pods, waypoints, gateways)
//	spiffe://<td>/ambit/node/<node>                       node (ztunnel and CNI agent of that node)
//	spiffe://<td>/ambit/<component>                       control-plane service (config, ca, xds, gateway)
//	spiffe://<td>/ambit/admin                             administrator (ambitctl, orchestrators)
//	spiffe://<td>/ambit/admin/<name>                      named administrator, for audit logs
//
// Namespaces follow Kubernetes' DNS-1123 label rules, service accounts and
// node names its DNS-1123 subdomain rules (the rules Kubernetes applies to
// those objects), admin names and components DNS-1123 label rules. [Parse]
// accepts only those shapes, so an [Identity] that exists is always one Ambit
// can reason about; anything else in a peer certificate or CSR is rejected.
//
// The node agents (ztunnel, CNI agent) have no control-plane identity of their
// own: they authenticate with their node's identity, so a node credential is
// all a node ever holds.
//
// # TLS
//
// [ServerConfig], [OptionalClientCertServerConfig] and [ClientConfig] build
// *tls.Config values that take their certificate and trust bundles from an
// [X509Source] on every handshake, so swapping the material in a [Source]
// (certificate renewal, root rotation) takes effect without rebuilding the
// configuration or restarting listeners. The peer is verified against the
// trust bundle of its own trust domain, then parsed into an [Identity] and
// handed to an [Authorizer]. After the handshake, [PeerIdentity] returns who
// the peer is.
package spiffe
