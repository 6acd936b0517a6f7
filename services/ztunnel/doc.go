// Package ztunnel is the Ambit component the per-node L4 proxy: HBONE (HTTP/2 CONNECT over mTLS) tunnels between pods, in-pod listeners from ZDS, L4 authorization and Istio-compatible telemetry (DESIGN §5). It is built in issue 8.
//
// The module exists so the workspace, versions.yaml and the layout checks
// cover every component from the start; its code arrives with its issue.
package ztunnel

// Component is the component's name in versions.yaml, metrics and
// environment variables.
const Component = "ztunnel"
