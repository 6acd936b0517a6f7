// Package ztunnel is Ambit's per-node L4 proxy (DESIGN §5): it takes the
// pods the CNI agent hands it over ZDS, listens inside each pod's network
// namespace (15001 outbound, 15006 inbound plaintext, 15008 HBONE), tunnels
// pod-to-pod traffic over HTTP/2 CONNECT with mutual TLS carrying each
// workload's own identity, enforces L4 authorization and reports Istio's
// TCP metrics. The code is under internal/: app wires it, proxy is the
// data path, mesh the xds view, tunnel HBONE, inpod the listeners, certs
// the workload certificates, authz the policy engine.
package ztunnel

// Component is the component's name in versions.yaml, metrics and
// environment variables.
const Component = "ztunnel"
