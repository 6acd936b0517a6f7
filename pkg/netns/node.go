package netns

import (
	"context"
	"fmt"
	"net/netip"
)

// Node is a node of the topology: a namespace on the fabric with a bridge
// for its pods. It also carries what a CNI runtime needs to wire pods into
// it itself (NetnsPath, BridgeName, PodCIDR, Gateway).
type Node struct {
	name     string
	ns       *Handle
	fabricIP netip.Addr
	podCIDR  netip.Prefix
	gateway  netip.Addr
	bridge   string
	undo     undoStack

	used map[netip.Addr]bool // pod IPs in use; guarded by Topology.mu
}

// Name is the node's name.
func (n *Node) Name() string { return n.name }

// NS is the node's namespace.
func (n *Node) NS() *Handle { return n.ns }

// NetnsPath is where the node's namespace is mounted.
func (n *Node) NetnsPath() string { return n.ns.Path() }

// FabricIP is the node's address on the fabric (on its Uplink).
func (n *Node) FabricIP() netip.Addr { return n.fabricIP }

// Uplink is the node's interface to the fabric, inside its namespace.
func (n *Node) Uplink() string { return PodInterface }

// PodCIDR is the range the node's pods get addresses from.
func (n *Node) PodCIDR() netip.Prefix { return n.podCIDR }

// Gateway is the first address of PodCIDR, held by the node's bridge; pods
// route everything through it.
func (n *Node) Gateway() netip.Addr { return n.gateway }

// BridgeName is the node's pod bridge, inside its namespace.
func (n *Node) BridgeName() string { return n.bridge }

// AddNode adds a node: a namespace joined to the fabric bridge by a veth,
// with its fabric IP, a pod bridge holding the gateway of its pod CIDR,
// forwarding on, and routes both ways between its pod CIDR and every other
// node's. On failure nothing of the node remains.
func (t *Topology) AddNode(ctx context.Context, name string) (*Node, error) {
	if err := validateObjectName("node", name); err != nil {
		return nil, fmt.Errorf("topology %s: %w", t.names.run, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n, err := t.addNode(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("topology %s: add node %q: %w", t.names.run, name, err)
	}
	return n, nil
}

func (t *Topology) addNode(ctx context.Context, name string) (*Node, error) {
	if t.closed {
		return nil, ErrTopologyClosed
	}
	if t.findNode(name) != nil {
		return nil, fmt.Errorf("node exists")
	}
	k := t.nodeSeq + 1
	fabricIP, err := nthHost(t.opts.FabricCIDR, k)
	if err != nil {
		return nil, fmt.Errorf("fabric CIDR full: %w", err)
	}
	podCIDR, err := nthSubnet(t.opts.PodCIDRPool, t.opts.PodCIDRBits, k)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR pool full: %w", err)
	}
	gateway, err := nthHost(podCIDR, 1)
	if err != nil {
		return nil, err
	}
	fabricPort, err := t.names.fabricPort(k)
	if err != nil {
		return nil, err
	}
	bridge, err := t.names.nodeBridge(k)
	if err != nil {
		return nil, err
	}
	n := &Node{
		name: name, fabricIP: fabricIP, podCIDR: podCIDR, gateway: gateway,
		bridge: bridge, used: map[netip.Addr]bool{},
	}
	fabricBits := t.opts.FabricCIDR.Bits()
	prefix := "node " + name + ": "
	steps := []step{
		{prefix + "create netns", func() error {
			var err error
			n.ns, err = t.createNetns(&n.undo, t.names.nodeNetns(name))
			return err
		}},
		{prefix + "loopback up", func() error { return setLinksUp(n.ns, "lo") }},
		{prefix + "enable ip_forward", func() error { return n.ns.SetSysctl("net.ipv4.ip_forward", "1") }},
		{prefix + "create uplink veth", func() error {
			return addVeth(&n.undo, t.fabric, fabricPort, n.ns, PodInterface)
		}},
		{prefix + "attach uplink to fabric bridge", func() error {
			return attachUp(t.fabric, fabricPort, t.names.fabricBridge())
		}},
		{prefix + "configure uplink", func() error { return addrUp(n.ns, PodInterface, fabricIP, fabricBits) }},
		{prefix + "create pod bridge", func() error { return t.addBridge(&n.undo, n.ns, bridge) }},
		{prefix + "configure pod bridge", func() error { return addrUp(n.ns, bridge, gateway, podCIDR.Bits()) }},
	}
	for _, peer := range t.nodes {
		toPeer := route{dst: peer.podCIDR, gw: peer.fabricIP, dev: PodInterface}
		fromPeer := route{dst: podCIDR, gw: fabricIP, dev: PodInterface}
		steps = append(steps,
			step{prefix + "route to node " + peer.name, func() error { return addRoute(n.ns, toPeer) }},
			step{"node " + peer.name + ": route to node " + name, func() error {
				if err := addRoute(peer.ns, fromPeer); err != nil {
					return err
				}
				n.undo.pushIndependent("route "+fromPeer.String()+" in "+peer.ns.String(), func() error {
					return delRoute(peer.ns, fromPeer)
				})
				return nil
			}},
		)
	}
	steps = append(steps,
		step{prefix + "wait for uplink", func() error {
			if err := t.waitReady(ctx, t.fabric, fabricPort); err != nil {
				return err
			}
			return t.waitReady(ctx, n.ns, PodInterface)
		}},
	)
	if err := t.build(ctx, &n.undo, steps); err != nil {
		return nil, err
	}
	t.nodeSeq = k
	t.nodes = append(t.nodes, n)
	t.log.Debug("node added", "node", name, "netns", n.ns.Name(), "fabricIP", fabricIP, "podCIDR", podCIDR)
	return n, nil
}

// allocIP reserves the lowest free pod address of the node.
func (n *Node) allocIP() (netip.Addr, error) {
	for i := 2; ; i++ { // host 1 is the gateway
		ip, err := nthHost(n.podCIDR, i)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("node %s: pod CIDR %v exhausted", n.name, n.podCIDR)
		}
		if !n.used[ip] {
			n.used[ip] = true
			return ip, nil
		}
	}
}
