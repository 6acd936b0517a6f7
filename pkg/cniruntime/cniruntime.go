// Package cniruntime is the container-runtime side of CNI for the local
// runtime and the privileged tests: it builds a node's network
// configuration list (the reference bridge + host-local plugins, with
// ambit-cni chained after them) and runs ADD, CHECK and DEL for pod
// sandboxes through libcni, executing every plugin inside the node's
// network namespace, as a kubelet on that node would.
//
// Everything it writes is per node (host-local's lease directory, libcni's
// result cache), because several nodes share one kernel and filesystem.
package cniruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ambitmesh/ambit/pkg/netns"
)

// NodeNetwork describes one node's pod network.
type NodeNetwork struct {
	// Name of the network (conflist "name").
	Name string
	// Bridge is the node's pod bridge; Gateway its address in PodCIDR.
	Bridge  string
	PodCIDR netip.Prefix
	Gateway netip.Addr
	// RangeStart, when set, is the first address host-local hands out, so
	// CNI pods can share a node with addresses assigned some other way.
	RangeStart netip.Addr
	// StateDir holds host-local's leases and libcni's cache for this node.
	StateDir string
	// Ambit is the ambit-cni plugin's configuration; nil leaves ambit-cni
	// out of the chain.
	Ambit *AmbitPlugin
}

// AmbitPlugin is ambit-cni's part of the conflist.
type AmbitPlugin struct {
	AgentSocket string `json:"agentSocket"`
	SpoolDir    string `json:"spoolDir,omitempty"`
	FailClosed  bool   `json:"failClosed,omitempty"`
	Timeout     string `json:"timeout,omitempty"`
}

// ConfList renders the node's network configuration list.
func (n NodeNetwork) ConfList() ([]byte, error) {
	if n.Name == "" || n.Bridge == "" || !n.PodCIDR.IsValid() || !n.Gateway.IsValid() || n.StateDir == "" {
		return nil, errors.New("cniruntime: NodeNetwork needs Name, Bridge, PodCIDR, Gateway and StateDir")
	}
	rng := map[string]string{"subnet": n.PodCIDR.String(), "gateway": n.Gateway.String()}
	if n.RangeStart.IsValid() {
		rng["rangeStart"] = n.RangeStart.String()
	}
	plugins := []any{
		map[string]any{
			"type": "bridge", "bridge": n.Bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"dataDir": filepath.Join(n.StateDir, "ipam"),
				"ranges":  [][]map[string]string{{rng}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			},
		},
	}
	if n.Ambit != nil {
		b, err := json.Marshal(n.Ambit)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		m["type"] = "ambit-cni"
		plugins = append(plugins, m)
	}
	return json.MarshalIndent(map[string]any{"cniVersion": "1.0.0", "name": n.Name, "plugins": plugins}, "", "  ")
}

// Runtime runs CNI operations for one node.
type Runtime struct {
	node  *netns.Handle
	confs *libcni.NetworkConfigList
	// lo brings the sandbox's loopback up, as container runtimes do with
	// the reference loopback plugin before the pod network: ztunnel's
	// in-pod listeners and the redirection to them live on lo.
	lo      *libcni.NetworkConfigList
	cni     *libcni.CNIConfig
	network NodeNetwork
}

// New prepares a runtime whose plugins (found in pluginDirs) run inside
// node's network namespace.
func New(node *netns.Handle, network NodeNetwork, pluginDirs []string) (*Runtime, error) {
	b, err := network.ConfList()
	if err != nil {
		return nil, err
	}
	confs, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("cniruntime: conflist: %w", err)
	}
	if err := os.MkdirAll(network.StateDir, 0o700); err != nil {
		return nil, err
	}
	lo, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.0.0","name":"cni-loopback","plugins":[{"type":"loopback"}]}`))
	if err != nil {
		return nil, err
	}
	exec := &nodeExec{node: node}
	return &Runtime{
		node: node, confs: confs, network: network, lo: lo,
		cni: libcni.NewCNIConfigWithCacheDir(pluginDirs, filepath.Join(network.StateDir, "cache"), exec),
	}, nil
}

// Pod names one sandbox, as a kubelet passes it in CNI_ARGS.
type Pod struct {
	Namespace, Name, UID string
	// ContainerID is the sandbox id.
	ContainerID string
	// Netns is the sandbox's network namespace path.
	Netns string
	// IfName defaults to eth0.
	IfName string
}

func (r *Runtime) rt(p Pod) *libcni.RuntimeConf {
	ifName := p.IfName
	if ifName == "" {
		ifName = "eth0"
	}
	return &libcni.RuntimeConf{
		ContainerID: p.ContainerID, NetNS: p.Netns, IfName: ifName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace}, {"K8S_POD_NAME", p.Name},
			{"K8S_POD_UID", p.UID}, {"K8S_POD_INFRA_CONTAINER_ID", p.ContainerID},
		},
	}
}

func (r *Runtime) loRT(p Pod) *libcni.RuntimeConf {
	rt := r.rt(p)
	rt.IfName = "lo"
	return rt
}

// Add brings the sandbox's loopback up, runs ADD through the chain and
// returns the final result.
func (r *Runtime) Add(ctx context.Context, p Pod) (*current.Result, error) {
	if _, err := r.cni.AddNetworkList(ctx, r.lo, r.loRT(p)); err != nil {
		return nil, fmt.Errorf("CNI ADD %s/%s: loopback: %w", p.Namespace, p.Name, err)
	}
	res, err := r.cni.AddNetworkList(ctx, r.confs, r.rt(p))
	if err != nil {
		return nil, fmt.Errorf("CNI ADD %s/%s: %w", p.Namespace, p.Name, err)
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("CNI ADD %s/%s: result: %w", p.Namespace, p.Name, err)
	}
	return cur, nil
}

// Check runs CHECK through the chain.
func (r *Runtime) Check(ctx context.Context, p Pod) error {
	if err := r.cni.CheckNetworkList(ctx, r.confs, r.rt(p)); err != nil {
		return fmt.Errorf("CNI CHECK %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// Del runs DEL through the chain (in reverse, as CNI specifies).
func (r *Runtime) Del(ctx context.Context, p Pod) error {
	if err := r.cni.DelNetworkList(ctx, r.confs, r.rt(p)); err != nil {
		return fmt.Errorf("CNI DEL %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := r.cni.DelNetworkList(ctx, r.lo, r.loRT(p)); err != nil {
		return fmt.Errorf("CNI DEL %s/%s: loopback: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// PodIP is the first IPv4 address of a result.
func PodIP(res *current.Result) (netip.Addr, bool) {
	for _, ip := range res.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok && a.Unmap().Is4() {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// nodeExec runs plugins from a thread inside the node's netns, so the
// bridge plugin finds the node's bridge and moves the veth peer from
// there into the pod.
type nodeExec struct {
	node *netns.Handle
	version.PluginDecoder
}

func (e *nodeExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, pluginPath)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdinData)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := e.node.Run(cmd); err != nil {
		// A plugin reports failures as a JSON error on stdout.
		if stdout.Len() > 0 {
			var perr types.Error
			if json.Unmarshal(stdout.Bytes(), &perr) == nil && perr.Msg != "" {
				return nil, &perr
			}
		}
		return nil, fmt.Errorf("%s: %w (stderr: %s)", filepath.Base(pluginPath), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

func (e *nodeExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}
