package demo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ambitmesh/ambit/pkg/cniruntime"
	"github.com/ambitmesh/ambit/pkg/localproc"
	"github.com/ambitmesh/ambit/pkg/netns"
)

// cniPluginDir is where `make cni-plugins` put the reference plugins.
func cniPluginDir() (string, error) {
	dir := os.Getenv("AMBIT_CNI_PLUGIN_DIR")
	if dir == "" {
		dir = filepath.Join(".bin", "cni")
	}
	if _, err := os.Stat(filepath.Join(dir, "bridge")); err != nil {
		return "", fmt.Errorf("reference CNI plugins not found in %s (make cni-plugins): %w", dir, err)
	}
	return filepath.Abs(dir)
}

// cniEnrollment starts node-a's CNI agent, creates a pod through real CNI
// ADD (bridge + host-local + ambit-cni), and flips its namespace's
// dataplane-mode label on and off: the running pod gains and loses its
// in-pod redirection rules with no restart.
func (e *Env) cniEnrollment(ctx context.Context) ([]string, error) {
	if e.Topo == nil || len(e.CA) == 0 || len(e.Config) == 0 {
		return nil, errors.New("needs the topology, the CA and config")
	}
	na, err := e.nodeAgent(ctx, "node-a")
	if err != nil {
		return nil, err
	}
	ev := []string{fmt.Sprintf("ambit-cni-agent for node-a: pid %d, joined with a fresh token, plugin socket %s", na.agent.Pid(), filepath.Join(na.runDir, "node-a", "cni", "agent.sock"))}

	manifest := `apiVersion: v1
kind: Namespace
metadata: {name: cni-demo}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: cni-demo, labels: {app: web}}
spec: {nodeName: node-a, serviceAccountName: web, containers: [{name: web, image: web}]}
`
	if err := e.applyString(ctx, manifest); err != nil {
		return ev, err
	}
	rt := na.rt
	pod, err := e.Topo.AddEmptyPod(ctx, "node-a", "cni-web")
	if err != nil {
		return ev, err
	}
	sandbox := cniruntime.Pod{Namespace: "cni-demo", Name: "web", ContainerID: "demo-web", Netns: pod.NetnsPath()}
	res, err := rt.Add(ctx, sandbox)
	if err != nil {
		return ev, err
	}
	ip, _ := cniruntime.PodIP(res)
	e.closers = append(e.closers, func() { _ = rt.Del(context.Background(), sandbox) })
	n, err := ambitRuleCount(ctx, pod.NS())
	if err != nil {
		return ev, err
	}
	ev = append(ev, fmt.Sprintf("CNI ADD cni-demo/web: bridge + host-local gave %s, ambit-cni handed it to the agent; namespace unlabelled → %d redirection rules", ip, n))

	if err := e.applyString(ctx, "apiVersion: v1\nkind: Namespace\nmetadata: {name: cni-demo, labels: {istio.io/dataplane-mode: ambient}}\n"); err != nil {
		return ev, err
	}
	start := time.Now()
	if n, err = waitRules(ctx, pod.NS(), func(n int) bool { return n > 0 }); err != nil {
		return ev, err
	}
	ev = append(ev, fmt.Sprintf("label istio.io/dataplane-mode=ambient on the namespace → the running pod has %d AMBIT_* rules after %s (no restart)", n, time.Since(start).Round(time.Millisecond)))
	if err := e.applyString(ctx, "apiVersion: v1\nkind: Namespace\nmetadata: {name: cni-demo}\n"); err != nil {
		return ev, err
	}
	if _, err = waitRules(ctx, pod.NS(), func(n int) bool { return n == 0 }); err != nil {
		return ev, err
	}
	ev = append(ev, "label removed → every rule gone from the pod's netns")
	if err := rt.Del(ctx, sandbox); err != nil {
		return ev, err
	}
	return append(ev, "CNI DEL: the agent forgot the sandbox"), nil
}

func (e *Env) applyString(ctx context.Context, manifest string) error {
	f := filepath.Join(e.LogDir, "cni-demo.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		return err
	}
	if _, errOut, err := e.ambitctl(ctx, "apply", "-f", f); err != nil {
		return fmt.Errorf("apply: %w: %s", err, errOut)
	}
	return nil
}

// demoNode is one node's CNI side in the tour: its agent and the CNI
// runtime that creates pods on it.
type demoNode struct {
	name   string
	node   *netns.Node
	runDir string
	agent  *localproc.Process
	rt     *cniruntime.Runtime
}

// nodeAgent starts a node's CNI agent (joining with a fresh token) and
// its CNI runtime, once.
func (e *Env) nodeAgent(ctx context.Context, name string) (*demoNode, error) {
	if n := e.nodes[name]; n != nil {
		return n, nil
	}
	node, ok := e.Topo.Node(name)
	if !ok {
		return nil, fmt.Errorf("no %s in the topology", name)
	}
	plugins, err := cniPluginDir()
	if err != nil {
		return nil, err
	}
	tok, _, err := e.ambitctlCA(ctx, e.CA[0], "node", "token", "create", name, "--ttl=10m")
	if err != nil {
		return nil, err
	}
	runDir := filepath.Join(e.LogDir, "run")
	agent, err := localproc.Start(ctx, "cni-agent-"+name, filepath.Join(e.BinDir, "ambit-cni-agent"), []string{
		"--node=" + name, "--run-dir=" + runDir, "--admin-addr=127.0.0.1:0",
		"--config-servers=" + strings.Join(e.configAddrs(), ","), "--config-insecure-loopback",
		"--ca-servers=" + e.CA[0].Addr("grpc"), "--ca-bundle-file=" + filepath.Join(e.adminDir(), "bundle.pem"),
		"--join-token=" + strings.TrimSpace(tok),
	}, e.LogDir, 30*time.Second)
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { _ = agent.Stop(10 * time.Second) })
	rt, err := cniruntime.New(node.NS(), cniruntime.NodeNetwork{
		Name: "ambit", Bridge: node.BridgeName(), PodCIDR: node.PodCIDR(), Gateway: node.Gateway(),
		// The topology step's pods took the low addresses without CNI.
		RangeStart: offset(node.PodCIDR().Addr(), 10),
		StateDir:   filepath.Join(runDir, name, "cni-runtime"),
		Ambit: &cniruntime.AmbitPlugin{
			AgentSocket: filepath.Join(runDir, name, "cni", "agent.sock"),
			SpoolDir:    filepath.Join(runDir, name, "cni", "spool"),
		},
	}, []string{plugins, e.BinDir})
	if err != nil {
		return nil, err
	}
	n := &demoNode{name: name, node: node, runDir: runDir, agent: agent, rt: rt}
	if e.nodes == nil {
		e.nodes = map[string]*demoNode{}
	}
	e.nodes[name] = n
	return n, nil
}

func (e *Env) configAddrs() []string {
	var servers []string
	for _, p := range e.Config {
		if !p.Exited() {
			servers = append(servers, p.Addr("grpc"))
		}
	}
	return servers
}

// ambitRuleCount counts our rules in a pod's netns.
func ambitRuleCount(ctx context.Context, ns *netns.Handle) (int, error) {
	out, err := ns.CombinedOutput(ctx, "iptables-nft-save")
	if err != nil {
		return 0, fmt.Errorf("iptables-nft-save: %w: %s", err, out)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "-A") && strings.Contains(l, "AMBIT_") {
			n++
		}
	}
	return n, nil
}

// waitRules polls the pod's rules (they live in the kernel; there is no
// event to wait on) until cond holds.
func waitRules(ctx context.Context, ns *netns.Handle, cond func(int) bool) (int, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := ambitRuleCount(ctx, ns)
		if err != nil || cond(n) {
			return n, err
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("the agent did not converge: %d rules", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// offset is a + n (IPv4).
func offset(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
