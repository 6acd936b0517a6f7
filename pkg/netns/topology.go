package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"regexp"
	"sync"
	"time"
)

// ErrTopologyClosed is returned by a Topology's methods after Close.
var ErrTopologyClosed = errors.New("topology closed")

// Options configures a Topology. The zero value gives the defaults noted on
// each field.
type Options struct {
	// NamePrefix starts every namespace name ("<prefix>-<run>-node-a").
	// Default "ambit".
	NamePrefix string
	// FabricCIDR holds the node IPs: node k gets host k. Default 10.250.0.0/24.
	FabricCIDR netip.Prefix
	// PodCIDRPool is split into per-node pod CIDRs of PodCIDRBits: node k
	// gets subnet k. Default 10.251.0.0/16.
	PodCIDRPool netip.Prefix
	// PodCIDRBits is the prefix length of each node's pod CIDR. Default 24.
	PodCIDRBits int
	// ReadyTimeout caps how long AddNode and AddPod wait for new links to
	// carry traffic. Default 10s.
	ReadyTimeout time.Duration
	// Logger receives debug logs of each construction step. Default: discard.
	Logger *slog.Logger

	// fault, if set, is called before every construction step and can fail
	// it; tests use it to prove rollback.
	fault func(step string) error
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

func (o Options) withDefaults() Options {
	if o.NamePrefix == "" {
		o.NamePrefix = "ambit"
	}
	if !o.FabricCIDR.IsValid() {
		o.FabricCIDR = netip.MustParsePrefix("10.250.0.0/24")
	}
	if !o.PodCIDRPool.IsValid() {
		o.PodCIDRPool = netip.MustParsePrefix("10.251.0.0/16")
	}
	if o.PodCIDRBits == 0 {
		o.PodCIDRBits = 24
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) validate() error {
	if !prefixRE.MatchString(o.NamePrefix) {
		return fmt.Errorf("name prefix %q: must match %s", o.NamePrefix, prefixRE)
	}
	if err := validatePool("fabric CIDR", o.FabricCIDR, 30); err != nil {
		return err
	}
	if err := validatePool("pod CIDR pool", o.PodCIDRPool, 30); err != nil {
		return err
	}
	if o.PodCIDRBits <= o.PodCIDRPool.Bits() || o.PodCIDRBits > 30 {
		return fmt.Errorf("pod CIDR bits %d: want more than the pool's %d and at most 30", o.PodCIDRBits, o.PodCIDRPool.Bits())
	}
	if o.FabricCIDR.Overlaps(o.PodCIDRPool) {
		return fmt.Errorf("fabric CIDR %v overlaps pod CIDR pool %v", o.FabricCIDR, o.PodCIDRPool)
	}
	return nil
}

// Topology is a set of nodes and pods built from network namespaces on one
// host: a fabric namespace with a bridge joins the nodes; each node routes
// its pod CIDR to the others through the fabric; each pod hangs off its
// node's bridge. Nothing is created in the host namespace. Methods are safe
// for concurrent use; construction steps run one at a time.
type Topology struct {
	opts  Options
	log   *slog.Logger
	names topoNames

	mu      sync.Mutex
	closed  bool
	fabric  *Handle
	undo    undoStack // the fabric's
	nodes   []*Node
	pods    []*Pod
	nodeSeq int // ordinal of the last node added
	podSeq  int // ordinal of the last pod attempted; never reused
}

// runIDAttempts bounds retries when a run id is already taken on this host.
const runIDAttempts = 5

// New creates the fabric namespace and its bridge. Add nodes and pods to
// it, and Close it to remove everything.
func New(ctx context.Context, opts Options) (*Topology, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	for attempt := 1; ; attempt++ {
		t, err := newTopology(ctx, opts)
		// The fabric's name is the first thing created: if it exists, another
		// topology drew the same run id; nothing was made, draw again.
		if errors.Is(err, fs.ErrExist) && attempt < runIDAttempts {
			continue
		}
		return t, err
	}
}

func newTopology(ctx context.Context, opts Options) (*Topology, error) {
	run, err := newRunID()
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	t := &Topology{
		opts:  opts,
		log:   opts.Logger.With("topology", run),
		names: topoNames{prefix: opts.NamePrefix, run: run},
	}
	bridge := t.names.fabricBridge()
	err = t.build(ctx, &t.undo, []step{
		{"fabric: create netns", func() error {
			h, err := t.createNetns(&t.undo, t.names.fabricNetns())
			t.fabric = h
			return err
		}},
		{"fabric: loopback up", func() error { return setLinksUp(t.fabric, "lo") }},
		{"fabric: create bridge", func() error { return t.addBridge(&t.undo, t.fabric, bridge) }},
		{"fabric: bridge up", func() error { return setLinksUp(t.fabric, bridge) }},
	})
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", run, err)
	}
	t.log.Debug("topology created", "fabric", t.fabric.Name())
	return t, nil
}

// RunID is the random tag in every name this topology creates.
func (t *Topology) RunID() string { return t.names.run }

// Fabric is the fabric namespace.
func (t *Topology) Fabric() *Handle { return t.fabric }

// FabricBridge is the name of the bridge in the fabric namespace.
func (t *Topology) FabricBridge() string { return t.names.fabricBridge() }

// Node returns the node with that name.
func (t *Topology) Node(name string) (*Node, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.findNode(name)
	return n, n != nil
}

// Nodes returns the nodes in the order they were added.
func (t *Topology) Nodes() []*Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*Node(nil), t.nodes...)
}

// Pod returns the pod with that name.
func (t *Topology) Pod(name string) (*Pod, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.findPod(name)
	return p, p != nil
}

// Pods returns the pods in the order they were added.
func (t *Topology) Pods() []*Pod {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*Pod(nil), t.pods...)
}

func (t *Topology) findNode(name string) *Node {
	for _, n := range t.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func (t *Topology) findPod(name string) *Pod {
	for _, p := range t.pods {
		if p.name == name {
			return p
		}
	}
	return nil
}

// Close removes every pod, node and the fabric — links and routes first
// (concurrently), then namespaces and their mounts, newest first — and
// reports all failures joined. Links are deleted explicitly rather than
// left to namespace teardown, so they are gone when Close returns even if
// something still holds a namespace. It does
// not kill processes started in the namespaces; a namespace a process
// still holds lives on unnamed, without the links Close removed. Calling
// Close again does nothing.
func (t *Topology) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var stacks []*undoStack
	for i := len(t.pods) - 1; i >= 0; i-- {
		stacks = append(stacks, &t.pods[i].undo)
	}
	for i := len(t.nodes) - 1; i >= 0; i-- {
		stacks = append(stacks, &t.nodes[i].undo)
	}
	stacks = append(stacks, &t.undo)
	err := runUndo(stacks...)
	t.pods, t.nodes = nil, nil
	if err != nil {
		return fmt.Errorf("topology %s: close: %w", t.names.run, err)
	}
	t.log.Debug("topology closed")
	return nil
}

// step is one construction action. It records its own undo.
type step struct {
	what string
	do   func() error
}

// build runs steps in order; if one fails it undoes what the earlier ones
// recorded in undo and returns both errors.
func (t *Topology) build(ctx context.Context, undo *undoStack, steps []step) error {
	for _, s := range steps {
		t.log.Debug("step", "what", s.what)
		err := ctx.Err()
		if err == nil && t.opts.fault != nil {
			err = t.opts.fault(s.what)
		}
		if err == nil {
			err = s.do()
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", s.what, err)
			if rbErr := undo.run(); rbErr != nil {
				err = errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
			}
			return err
		}
	}
	return nil
}

// createNetns creates a named namespace and records its removal.
func (t *Topology) createNetns(undo *undoStack, name string) (*Handle, error) {
	h, err := Create(name)
	if err != nil {
		return nil, err
	}
	undo.push("netns "+name, func() error { return deleteNetns(h) })
	return h, nil
}

// deleteNetns removes the name and closes the handle, so nothing of ours
// keeps the namespace alive.
func deleteNetns(h *Handle) error {
	err := Delete(h.Name())
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, h.Close())
}

// waitReady waits, bounded by ReadyTimeout, until the links carry traffic.
func (t *Topology) waitReady(ctx context.Context, ns *Handle, links ...string) error {
	ctx, cancel := context.WithTimeout(ctx, t.opts.ReadyTimeout)
	defer cancel()
	return waitLinksReady(ctx, ns, links...)
}
