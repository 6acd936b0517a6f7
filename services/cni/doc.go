// Package cni is the Ambit component the chained CNI plugin (ambit-cni) and the node agent (ambit-cni-agent): pod enrollment by label, in-pod redirection with iptables or eBPF, and ZDS to ztunnel (DESIGN §5). It is built in issues 7 and 11.
//
// The module exists so the workspace, versions.yaml and the layout checks
// cover every component from the start; its code arrives with its issue.
package cni

// Component is the component's name in versions.yaml, metrics and
// environment variables.
const Component = "cni"
