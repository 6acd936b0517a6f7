package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
)

// Interface names are at most IFNAMSIZ-1 bytes.
const maxIfName = 15

// PodInterface is the name of a wired pod's interface inside its namespace,
// as a CNI runtime would name it. The node's uplink inside the node
// namespace has the same name. Both live in namespaces the topology owns
// alone, so they cannot collide; every other interface name carries the run
// id (see topoNames).
const PodInterface = "eth0"

// objectNameRE is what node and pod names may look like: DNS-label-like, so
// they are safe inside namespace names.
var objectNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,98}[a-z0-9])?$`)

func validateObjectName(kind, name string) error {
	if !objectNameRE.MatchString(name) {
		return fmt.Errorf("%s name %q: must match %s", kind, name, objectNameRE)
	}
	return nil
}

// newRunID returns 6 random hex digits. It tags every namespace and
// interface name of one topology, so topologies built at the same time on
// one kernel (parallel tests) never collide.
func newRunID() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// topoNames derives every name of one topology run.
type topoNames struct {
	prefix string // namespace name prefix, from Options
	run    string
}

func (n topoNames) fabricNetns() string { return fmt.Sprintf("%s-%s-fabric", n.prefix, n.run) }
func (n topoNames) nodeNetns(node string) string {
	return fmt.Sprintf("%s-%s-node-%s", n.prefix, n.run, node)
}
func (n topoNames) podNetns(pod string) string {
	return fmt.Sprintf("%s-%s-pod-%s", n.prefix, n.run, pod)
}

// fabricBridge is the bridge in the fabric namespace ("fab1a2b3c").
func (n topoNames) fabricBridge() string { return "fab" + n.run }

// fabricPort is node k's veth end on the fabric bridge ("f1a2b3c-1").
func (n topoNames) fabricPort(k int) (string, error) { return ifName("f%s-%d", n.run, k) }

// nodeBridge is node k's pod bridge ("b1a2b3c-1").
func (n topoNames) nodeBridge(k int) (string, error) { return ifName("b%s-%d", n.run, k) }

// podPort is pod k's veth end on its node's bridge ("p1a2b3c-12").
func (n topoNames) podPort(k int) (string, error) { return ifName("p%s-%d", n.run, k) }

func ifName(format string, args ...any) (string, error) {
	name := fmt.Sprintf(format, args...)
	if len(name) > maxIfName {
		return "", fmt.Errorf("interface name %q longer than %d bytes", name, maxIfName)
	}
	return name, nil
}
