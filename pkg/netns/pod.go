package netns

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
)

// Pod is a pod of the topology: a namespace, wired to its node's bridge
// unless created empty for a CNI plugin to wire.
type Pod struct {
	name string
	node *Node
	ns   *Handle
	ip   netip.Addr // invalid for empty pods
	port string     // veth end on the node bridge; "" for empty pods
	undo undoStack
}

// Name is the pod's name.
func (p *Pod) Name() string { return p.name }

// Node is the node the pod runs on.
func (p *Pod) Node() *Node { return p.node }

// NS is the pod's namespace.
func (p *Pod) NS() *Handle { return p.ns }

// NetnsPath is where the pod's namespace is mounted (CNI_NETNS).
func (p *Pod) NetnsPath() string { return p.ns.Path() }

// IP is the pod's address; invalid for a pod created by AddEmptyPod.
func (p *Pod) IP() netip.Addr { return p.ip }

// Interface is the pod's interface inside its namespace; "" for an empty pod.
func (p *Pod) Interface() string {
	if p.port == "" {
		return ""
	}
	return PodInterface
}

// HostPort is the pod's veth end on its node's bridge; "" for an empty pod.
func (p *Pod) HostPort() string { return p.port }

// AddPod adds a pod on node: a namespace attached to the node's bridge by a
// veth, with the next free address of the node's pod CIDR and a default
// route via the node's gateway. It returns once the pod can send. On
// failure nothing of the pod remains.
func (t *Topology) AddPod(ctx context.Context, node, name string) (*Pod, error) {
	return t.addPodLocked(ctx, node, name, true)
}

// AddEmptyPod adds a pod namespace on node with nothing in it, not even
// loopback up: what a container runtime hands to CNI ADD. The pod is
// removed with the topology or by RemovePod like any other.
func (t *Topology) AddEmptyPod(ctx context.Context, node, name string) (*Pod, error) {
	return t.addPodLocked(ctx, node, name, false)
}

func (t *Topology) addPodLocked(ctx context.Context, node, name string, wired bool) (*Pod, error) {
	if err := validateObjectName("pod", name); err != nil {
		return nil, fmt.Errorf("topology %s: %w", t.names.run, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p, err := t.addPod(ctx, node, name, wired)
	if err != nil {
		return nil, fmt.Errorf("topology %s: add pod %q: %w", t.names.run, name, err)
	}
	return p, nil
}

func (t *Topology) addPod(ctx context.Context, nodeName, name string, wired bool) (*Pod, error) {
	if t.closed {
		return nil, ErrTopologyClosed
	}
	if t.findPod(name) != nil {
		return nil, fmt.Errorf("pod exists")
	}
	n := t.findNode(nodeName)
	if n == nil {
		return nil, fmt.Errorf("no node %q", nodeName)
	}
	p := &Pod{name: name, node: n}
	prefix := "pod " + name + ": "
	steps := []step{
		{prefix + "create netns", func() error {
			var err error
			p.ns, err = t.createNetns(&p.undo, t.names.podNetns(name))
			return err
		}},
	}
	if wired {
		t.podSeq++
		port, err := t.names.podPort(t.podSeq)
		if err != nil {
			return nil, err
		}
		ip, err := n.allocIP()
		if err != nil {
			return nil, err
		}
		p.port, p.ip = port, ip
		p.undo.push("address "+ip.String(), func() error { delete(n.used, ip); return nil })
		steps = append(steps, t.wirePodSteps(ctx, p)...)
	}
	if err := t.build(ctx, &p.undo, steps); err != nil {
		return nil, err
	}
	t.pods = append(t.pods, p)
	t.log.Debug("pod added", "pod", name, "node", n.name, "netns", p.ns.Name(), "ip", p.ip)
	return p, nil
}

func (t *Topology) wirePodSteps(ctx context.Context, p *Pod) []step {
	n := p.node
	prefix := "pod " + p.name + ": "
	return []step{
		{prefix + "loopback up", func() error { return setLinksUp(p.ns, "lo") }},
		{prefix + "create veth", func() error { return addVeth(&p.undo, n.ns, p.port, p.ns, PodInterface) }},
		{prefix + "attach veth to node bridge", func() error { return attachUp(n.ns, p.port, n.bridge) }},
		{prefix + "configure interface", func() error { return addrUp(p.ns, PodInterface, p.ip, n.podCIDR.Bits()) }},
		{prefix + "default route", func() error {
			return addRoute(p.ns, route{gw: n.gateway, dev: PodInterface})
		}},
		{prefix + "wait for links", func() error {
			if err := t.waitReady(ctx, n.ns, p.port, n.bridge); err != nil {
				return err
			}
			return t.waitReady(ctx, p.ns, PodInterface)
		}},
	}
}

// RemovePod removes a pod's links and namespace and frees its address. For
// a pod from AddEmptyPod only the namespace is known here: run CNI DEL
// first, so the plugin releases its IPAM lease (the kernel removes the veth
// with the namespace).
func (t *Topology) RemovePod(name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("topology %s: remove pod %q: %w", t.names.run, name, ErrTopologyClosed)
	}
	i := slices.IndexFunc(t.pods, func(p *Pod) bool { return p.name == name })
	if i < 0 {
		return fmt.Errorf("topology %s: remove pod %q: no such pod", t.names.run, name)
	}
	p := t.pods[i]
	t.pods = slices.Delete(t.pods, i, i+1)
	if err := p.undo.run(); err != nil {
		return fmt.Errorf("topology %s: remove pod %q: %w", t.names.run, name, err)
	}
	return nil
}
