// Package cnievent is the contract between the ambit-cni plugin and the node
// agent: the pod event the plugin forwards, how it travels (JSON over HTTP on
// the agent's per-node unix socket) and the spool directory it is written to
// when the agent cannot be reached. The plugin runs once per CNI call and
// knows nothing about labels; everything it sends is what the runtime told
// it, so the agent treats an Event as untrusted input and validates it.
package cnievent

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Command is the CNI operation an event reports.
type Command string

// The CNI commands the plugin forwards.
const (
	Add   Command = "ADD"
	Del   Command = "DEL"
	Check Command = "CHECK"
)

// IP is one address the primary plugin assigned to the pod.
type IP struct {
	// Address is the pod's address with its subnet's prefix length.
	Address netip.Prefix `json:"address"`
	// Gateway is the pod's next hop, an address of the node's own netns:
	// connections from it (probes from the node) stay uncaptured.
	Gateway netip.Addr `json:"gateway,omitzero"`
}

// Event is one CNI call for a Kubernetes-style pod sandbox.
type Event struct {
	Command     Command `json:"command"`
	ContainerID string  `json:"containerID"`
	// Netns is the path of the sandbox's network namespace (empty on a DEL
	// after the namespace is gone).
	Netns  string `json:"netns,omitempty"`
	IfName string `json:"ifName,omitempty"`
	// Pod identity from CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME,
	// K8S_POD_UID).
	PodNamespace string `json:"podNamespace"`
	PodName      string `json:"podName"`
	PodUID       string `json:"podUID,omitempty"`
	IPs          []IP   `json:"ips,omitempty"`
	// At is when the plugin ran; spooled events are replayed in this order.
	At time.Time `json:"at"`
}

// Reply is the agent's answer to an event.
type Reply struct {
	// Error is set when the agent refuses or failed the event; the plugin
	// fails the CNI call with it.
	Error string `json:"error,omitempty"`
	// Enrolled tells whether the pod is enrolled in the mesh after the event.
	Enrolled bool `json:"enrolled,omitempty"`
}

// Path is where the agent serves events on its unix socket.
const Path = "/v1/cni/events"

// containerIDPattern is what runtimes use as sandbox ids: the id also names
// spool files, so anything that could escape the directory is refused.
var containerIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$`)

// Validate checks an event as the agent receives it, naming the field that
// is wrong.
func (e *Event) Validate() error {
	var errs []error
	switch e.Command {
	case Add, Del, Check:
	default:
		errs = append(errs, fmt.Errorf("command: %q is not ADD, DEL or CHECK", e.Command))
	}
	if !containerIDPattern.MatchString(e.ContainerID) {
		errs = append(errs, fmt.Errorf("containerID: %q is not a valid sandbox id", e.ContainerID))
	}
	if e.Command != Del && e.Netns == "" {
		errs = append(errs, errors.New("netns: required for "+string(e.Command)))
	}
	if e.Netns != "" && (!filepath.IsAbs(e.Netns) || strings.Contains(e.Netns, "\x00")) {
		errs = append(errs, fmt.Errorf("netns: %q is not an absolute path", e.Netns))
	}
	if err := checkDNSLabel(e.PodNamespace, 63); err != nil {
		errs = append(errs, fmt.Errorf("podNamespace: %w", err))
	}
	if err := checkDNSSubdomain(e.PodName); err != nil {
		errs = append(errs, fmt.Errorf("podName: %w", err))
	}
	if len(e.PodUID) > 128 {
		errs = append(errs, fmt.Errorf("podUID: longer than 128 characters"))
	}
	if len(e.IPs) > 16 {
		errs = append(errs, fmt.Errorf("ips: %d addresses, at most 16", len(e.IPs)))
	}
	for i, ip := range e.IPs {
		if !ip.Address.IsValid() {
			errs = append(errs, fmt.Errorf("ips[%d].address: missing", i))
		}
	}
	return errors.Join(errs...)
}

func checkDNSLabel(s string, maxLen int) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > maxLen {
		return fmt.Errorf("%q is longer than %d characters", s, maxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return fmt.Errorf("%q is not a DNS label (lower-case alphanumerics and '-')", s)
		}
	}
	return nil
}

func checkDNSSubdomain(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", s)
	}
	if s == "" {
		return errors.New("required")
	}
	for _, label := range strings.Split(s, ".") {
		if err := checkDNSLabel(label, 63); err != nil {
			return fmt.Errorf("%q is not a DNS subdomain", s)
		}
	}
	return nil
}

// PodKey is namespace/name, how the agent indexes sandboxes against pods.
func (e *Event) PodKey() string { return e.PodNamespace + "/" + e.PodName }
