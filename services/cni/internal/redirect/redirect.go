// Package redirect installs and removes the in-pod redirection that sends an
// enrolled pod's TCP traffic to the ztunnel listeners inside that pod's
// network namespace (DESIGN §5 "In-pod redirection"): outbound to 15001,
// inbound plaintext to 15006, inbound HBONE straight to 15008. Traffic from
// ztunnel's own sockets carries the mark 0x539 and is never redirected.
//
// Each mode (iptables now, eBPF later) implements [Redirector], so the node
// agent enrolls pods the same way whatever the mode.
package redirect

import (
	"context"
	"net/netip"

	"github.com/ambitmesh/ambit/pkg/netns"
)

// Pod is what redirection needs to know of a pod.
type Pod struct {
	// UID names the pod in logs and errors.
	UID string
	// Netns is the pod's network namespace; redirection lives inside it.
	Netns *netns.Handle
	// NodeAddrs are the node-side addresses the pod sees as its gateway.
	// Connections from them (kubelet-style probes from the node's own netns)
	// reach the app uncaptured, as probes must not depend on ztunnel.
	NodeAddrs []netip.Addr
}

// Redirector installs and removes redirection in a pod's netns. Calls for
// different pods may run concurrently.
type Redirector interface {
	// Mode names the mechanism ("iptables", "ebpf").
	Mode() string
	// Enroll installs redirection. It is idempotent: re-running it
	// converges to exactly the wanted state, never duplicating anything.
	Enroll(ctx context.Context, p Pod) error
	// Unenroll removes everything Enroll installed. It is idempotent and
	// succeeds when nothing was installed.
	Unenroll(ctx context.Context, p Pod) error
	// Check reports whether redirection is installed exactly as wanted.
	Check(ctx context.Context, p Pod) (bool, error)
}

// Default ports and marks, as Istio's ztunnel uses them.
const (
	DefaultOutboundPort         = 15001
	DefaultInboundPlaintextPort = 15006
	DefaultInboundHBONEPort     = 15008
	// DefaultMark is the SO_MARK ztunnel puts on its own sockets so that
	// redirection skips them.
	DefaultMark = 0x539
)

// label names a pod for errors and logs.
func (p Pod) label() string {
	ns := "<nil netns>"
	if p.Netns != nil {
		ns = p.Netns.String()
	}
	return "pod " + p.UID + " (netns " + ns + ")"
}
