package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/pkg/localproc"
	"github.com/ambitmesh/ambit/pkg/netns"
	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Env is what the steps share while the tour runs.
type Env struct {
	BinDir string
	// Manifests is the directory of demo manifests (deploy/local/demo).
	Manifests string
	// LogDir receives the processes' logs.
	LogDir string

	Stack    *devstack.Stack
	Topo     *netns.Topology
	Config   []*localproc.Process
	CA       []*localproc.Process
	nodeA    *spiffe.Source
	feed     *feedWatcher
	nodes    map[string]*demoNode
	xds      *localproc.Process
	ztunnels []*localproc.Process
	closers  []func()
}

// Close stops everything the tour started.
func (e *Env) Close() error {
	var errs []error
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	for _, p := range append(e.CA, e.Config...) {
		if err := p.Stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if e.Topo != nil {
		errs = append(errs, e.Topo.Close())
	}
	if e.Stack != nil {
		errs = append(errs, e.Stack.Stop())
	}
	return errors.Join(errs...)
}

// component is a binary the finished mesh consists of, and the issue that
// builds it while it does not exist yet.
type component struct {
	binary string
	issue  int
}

var components = []component{
	{"ambit-config", 4}, {"ambit-ca", 5}, {"ambit-xds", 6}, {"ambit-cni", 7},
	{"ambit-cni-agent", 7}, {"ambit-ztunnel", 8}, {"ambit-gateway", 0}, {"ambitctl", 0},
}

// Steps is the tour in order.
func Steps(env *Env) []Step {
	steps := []Step{
		{"The state servers run embedded: etcd and NATS JetStream on loopback random ports", env.startStack},
		{"The config service runs as two replicas; one is elected through etcd to publish the change feed", env.startConfig},
		{"Istio and Gateway API YAML applies unchanged: validated, stored in etcd", env.applyDemo},
		{"Applying the same YAML again changes nothing", env.reapply},
		{"Bad config is rejected with the field path and the bad value, and nothing is stored", env.rejectInvalid},
		{"Every change reaches change-feed consumers: a consistent listing, then ordered updates", env.followFeed},
		{"kill -9 of the change-feed leader loses nothing: the other replica takes over", env.killLeader},
		{"The CA runs as two replicas started at the same instant on an empty etcd, sharing one root", env.startCA},
		{"A node joins with a single-use token and gets its node identity", env.joinNode},
		{"A node gets certificates only for the pods placed on it", env.nodeBoundCerts},
	}
	if os.Geteuid() == 0 {
		steps = append(steps,
			Step{"Nodes and pods are network namespaces: 2 nodes x 2 pods reach each other across nodes", env.topology},
			Step{"Pods come up through real CNI (bridge + host-local + ambit-cni) and join or leave the mesh by label, without a restart", env.cniEnrollment},
			Step{"Pods on two nodes talk over HBONE with their own identities; a DENY policy by principal is enforced", env.meshTraffic},
			Step{"Tearing the topology down leaves no namespace behind", env.teardown},
		)
	}
	steps = append(steps, Step{"Every built binary reports its component and version", env.versions})
	return steps
}

func (e *Env) startStack(ctx context.Context) ([]string, error) {
	s, err := devstack.Start(ctx, devstack.Options{})
	if err != nil {
		return nil, err
	}
	e.Stack = s
	return []string{"etcd: " + strings.Join(s.EtcdEndpoints(), ","), "nats: " + s.NATSURL()}, nil
}

func (e *Env) topology(ctx context.Context) ([]string, error) {
	t, err := netns.New(ctx, netns.Options{NamePrefix: "ambit-demo"})
	if err != nil {
		return nil, err
	}
	e.Topo = t
	var ev []string
	for _, n := range []string{"node-a", "node-b"} {
		node, err := t.AddNode(ctx, n)
		if err != nil {
			return ev, err
		}
		ev = append(ev, fmt.Sprintf("%s: fabric %s, pod CIDR %s", n, node.FabricIP(), node.PodCIDR()))
		for i := range 2 {
			p, err := t.AddPod(ctx, n, fmt.Sprintf("%s-pod-%d", strings.TrimPrefix(n, "node-"), i))
			if err != nil {
				return ev, err
			}
			ev = append(ev, fmt.Sprintf("  pod %s: %s", p.Name(), p.IP()))
		}
	}
	pods := t.Pods()
	for _, from := range pods {
		for _, to := range pods {
			if from == to || from.Node() == to.Node() {
				continue
			}
			out, err := from.NS().CombinedOutput(ctx, "ping", "-c1", "-W2", to.IP().String())
			if err != nil {
				return ev, fmt.Errorf("ping %s -> %s: %w\n%s", from.Name(), to.Name(), err, out)
			}
			ev = append(ev, fmt.Sprintf("%s -> %s (%s): %s", from.Name(), to.Name(), to.IP(), rtt(string(out))))
		}
	}
	return ev, nil
}

func (e *Env) teardown(context.Context) ([]string, error) {
	if e.Topo == nil {
		return nil, errors.New("no topology was built")
	}
	prefix := "ambit-demo-" + e.Topo.RunID()
	if err := e.Topo.Close(); err != nil {
		return nil, err
	}
	e.Topo = nil
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, err
	}
	if strings.Contains(string(out), prefix) {
		return nil, fmt.Errorf("ip netns list still shows %s:\n%s", prefix, out)
	}
	return []string{fmt.Sprintf("ip netns list shows nothing named %s*", prefix)}, nil
}

func (e *Env) versions(ctx context.Context) ([]string, error) {
	var ev []string
	for _, c := range components {
		path := filepath.Join(e.BinDir, c.binary)
		if _, err := os.Stat(path); err != nil {
			why := "not built yet"
			if c.issue > 0 {
				why += fmt.Sprintf(" (issue #%d)", c.issue)
			}
			ev = append(ev, fmt.Sprintf("%-16s %s", c.binary, why))
			continue
		}
		out, err := exec.CommandContext(ctx, path, "--version").Output()
		if err != nil {
			return ev, fmt.Errorf("%s --version: %w", c.binary, err)
		}
		ev = append(ev, fmt.Sprintf("%-16s %s", c.binary, strings.TrimSpace(string(out))))
	}
	return ev, nil
}

// rtt picks the round-trip summary out of ping's output.
func rtt(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "time="); i >= 0 {
			return l[i:]
		}
	}
	return "reply received"
}
