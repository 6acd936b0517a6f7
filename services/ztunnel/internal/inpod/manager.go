package inpod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/ambitmesh/ambit/pkg/netns"
	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/zdsclient"
)

// Defaults for Options (DESIGN §5).
const (
	DefaultOutboundPort         = 15001
	DefaultInboundPlaintextPort = 15006
	DefaultHBONEPort            = 15008
	DefaultMark                 = 0x539
)

// ErrStopped is returned by Add after StopAccepting or Close.
var ErrStopped = errors.New("inpod: manager stopped accepting")

// Handlers receive the connections accepted on pods' listeners. Each call
// runs in its own goroutine and owns the connection; pod is the pod whose
// listener accepted it. All three are required.
type Handlers struct {
	Outbound         func(pod *Pod, c *net.TCPConn)
	InboundPlaintext func(pod *Pod, c *net.TCPConn)
	InboundHBONE     func(pod *Pod, c *net.TCPConn)
}

// Ports are the in-pod listener ports; zero fields take the defaults.
type Ports struct {
	Outbound         int
	InboundPlaintext int
	InboundHBONE     int
}

// Options configures a Manager.
type Options struct {
	Handlers Handlers
	Ports    Ports
	// Mark is set on every socket the manager creates, so the pod's
	// redirection skips ztunnel's own traffic. Zero means DefaultMark.
	Mark uint32
	// Logger receives pod events; nil discards.
	Logger *slog.Logger
}

// Manager keeps the listeners of every pod on this node that ZDS handed
// over. It implements zdsclient.Handler. Safe for concurrent use.
type Manager struct {
	log      *slog.Logger
	handlers [numKinds]func(*Pod, *net.TCPConn)
	ports    [numKinds]int
	mark     uint32

	// opMu serializes changes, which do netns work, so that mu is held
	// only for map access and lookups never wait on a setns.
	opMu    sync.Mutex
	mu      sync.RWMutex
	pods    map[string]*Pod
	stopped bool
}

var _ zdsclient.Handler = (*Manager)(nil)

// New validates opts and returns an empty Manager.
func New(opts Options) (*Manager, error) {
	h := opts.Handlers
	if h.Outbound == nil || h.InboundPlaintext == nil || h.InboundHBONE == nil {
		return nil, errors.New("inpod: all three Handlers are required")
	}
	ports := [numKinds]int{opts.Ports.Outbound, opts.Ports.InboundPlaintext, opts.Ports.InboundHBONE}
	defaults := [numKinds]int{DefaultOutboundPort, DefaultInboundPlaintextPort, DefaultHBONEPort}
	for k := range ports {
		if ports[k] == 0 {
			ports[k] = defaults[k]
		}
		if ports[k] < 1 || ports[k] > 65535 {
			return nil, fmt.Errorf("inpod: %s port %d out of range", Kind(k), ports[k])
		}
		for j := range k {
			if ports[j] == ports[k] {
				return nil, fmt.Errorf("inpod: %s and %s share port %d", Kind(j), Kind(k), ports[k])
			}
		}
	}
	if opts.Mark == 0 {
		opts.Mark = DefaultMark
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		log:      opts.Logger,
		handlers: [numKinds]func(*Pod, *net.TCPConn){h.Outbound, h.InboundPlaintext, h.InboundHBONE},
		ports:    ports,
		mark:     opts.Mark,
		pods:     make(map[string]*Pod),
	}, nil
}

// Add starts serving pod uid in the netns f, which Add owns and closes
// whatever it returns. Adding a uid already served in the same netns (the
// same inode) keeps its listeners — every ZDS snapshot repeats the adds;
// in another netns (the pod's sandbox was recreated) the new listeners
// replace the old.
func (m *Manager) Add(ctx context.Context, uid string, info *zdspb.WorkloadInfo, f *os.File) error {
	if f == nil {
		return fmt.Errorf("inpod: add %s: no netns", uid)
	}
	// FromFd duplicates the descriptor and checks it is a network namespace.
	h, err := netns.FromFd(int(f.Fd()))
	f.Close()
	if err != nil {
		return fmt.Errorf("inpod: add %s: %w", uid, err)
	}
	if uid == "" {
		h.Close()
		return errors.New("inpod: add: empty uid")
	}

	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.RLock()
	old, stopped := m.pods[uid], m.stopped
	m.mu.RUnlock()
	if stopped {
		h.Close()
		return fmt.Errorf("inpod: add %s: %w", uid, ErrStopped)
	}
	if old != nil {
		if same, err := old.ns.Same(h); err == nil && same {
			h.Close()
			old.log.Debug("pod already served in this netns; keeping its listeners")
			return nil
		}
	}
	p, err := m.newPod(ctx, uid, info, h)
	if err != nil {
		return fmt.Errorf("inpod: add %s: %w", uid, err)
	}
	m.mu.Lock()
	m.pods[uid] = p
	m.mu.Unlock()
	if old != nil {
		if err := old.remove(); err != nil {
			old.log.Warn("removing replaced pod", "error", err)
		}
		p.log.Info("pod netns changed; listeners replaced", "old_netns_inode", old.inode)
	}
	p.log.Info("serving pod", "ips", p.ips, "netns_inode", p.inode)
	return nil
}

// newPod creates the pod's listeners and starts serving them. It takes
// over h, closing it on failure.
func (m *Manager) newPod(ctx context.Context, uid string, info *zdspb.WorkloadInfo, h *netns.Handle) (*Pod, error) {
	p := &Pod{
		uid:    uid,
		info:   proto.CloneOf(info),
		ns:     h,
		dialer: &net.Dialer{Control: socketControl(m.mark, false)},
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	p.log = m.log.With("uid", uid, "pod", info.GetNamespace()+"/"+info.GetName())
	fail := func(err error) (*Pod, error) {
		for _, ln := range p.lns {
			if ln != nil {
				ln.Close()
			}
		}
		h.Close()
		return nil, err
	}
	var err error
	if p.inode, err = h.Inode(); err != nil {
		return fail(err)
	}
	var migrateErr error
	lc := &net.ListenConfig{Control: socketControl(m.mark, true)}
	// One disposable thread does all the work inside the netns.
	err = h.Do(func() error {
		for k, port := range m.ports {
			// The wildcard: outbound arrives redirected to loopback,
			// inbound to the pod's own address.
			ln, err := lc.Listen(ctx, "tcp", ":"+strconv.Itoa(port))
			if err != nil {
				return fmt.Errorf("listen %s on port %d: %w", Kind(k), port, err)
			}
			p.lns[k] = ln.(*net.TCPListener)
		}
		migrateErr = setMigrateReq()
		nh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink handle: %w", err)
		}
		defer nh.Close()
		p.ips, err = podIPs(nh)
		return err
	})
	if err != nil {
		return fail(fmt.Errorf("netns %s: %w", h, err))
	}
	if migrateErr != nil {
		// The CNI agent sets it too; without it an upgrade resets the
		// connections queued on the old listeners, nothing worse.
		p.log.Debug("cannot set net.ipv4.tcp_migrate_req", "error", migrateErr)
	}
	for k := range p.lns {
		p.wg.Add(1)
		go p.serve(Kind(k), m.handlers[k])
	}
	return p, nil
}

// setMigrateReq sets net.ipv4.tcp_migrate_req=1 in the calling thread's
// netns (DESIGN §5, upgrade overlap).
func setMigrateReq() error {
	const path = "/proc/sys/net/ipv4/tcp_migrate_req"
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	return os.WriteFile(path, []byte("1"), 0)
}

// Del stops serving uid: its listeners close, established connections are
// left to the proxy (Pod.Done). An unknown uid is not an error, since ZDS
// sends deletes to every connected ztunnel.
func (m *Manager) Del(_ context.Context, uid string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	p := m.pods[uid]
	delete(m.pods, uid)
	m.mu.Unlock()
	if p == nil {
		m.log.Debug("del of a pod not served", "uid", uid)
		return nil
	}
	err := p.remove()
	p.log.Info("pod removed")
	if err != nil {
		return fmt.Errorf("inpod: del %s: %w", uid, err)
	}
	return nil
}

// Keep confirms, during a ZDS snapshot, that uid is still enrolled though
// the agent no longer holds its netns; it fails if uid is not served, so
// the agent learns that the pod is not.
func (m *Manager) Keep(_ context.Context, uid string) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.pods[uid] == nil {
		return fmt.Errorf("inpod: keep %s: pod not served here", uid)
	}
	return nil
}

// Snapshot removes every pod whose uid is not in uids: the agent's set is
// the truth, and a pod it deleted while ztunnel was not connected appears
// only by its absence.
func (m *Manager) Snapshot(_ context.Context, uids []string) error {
	keep := make(map[string]bool, len(uids))
	for _, u := range uids {
		keep[u] = true
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	var gone []*Pod
	m.mu.Lock()
	for uid, p := range m.pods {
		if !keep[uid] {
			gone = append(gone, p)
			delete(m.pods, uid)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, p := range gone {
		if err := p.remove(); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", p.uid, err))
		}
		p.log.Info("pod removed: not in the ZDS snapshot")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("inpod: snapshot: %w", err)
	}
	return nil
}

// Pod returns the pod served under uid.
func (m *Manager) Pod(uid string) (*Pod, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p, ok := m.pods[uid]
	return p, ok
}

// Pods returns the served pods ordered by uid.
func (m *Manager) Pods() []*Pod {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Pod, 0, len(m.pods))
	for _, uid := range slices.Sorted(maps.Keys(m.pods)) {
		out = append(out, m.pods[uid])
	}
	return out
}

// StopAccepting closes every pod's listeners, the first step of a
// shutdown: a newer ztunnel's SO_REUSEPORT listeners take the new
// connections while this one drains. Pods stay known and Pod.Dial keeps
// working for connections already accepted; further Adds fail.
func (m *Manager) StopAccepting() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	m.stopped = true
	pods := slices.Collect(maps.Values(m.pods))
	m.mu.Unlock()
	var errs []error
	for _, p := range pods {
		if err := p.stopAccepting(); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", p.uid, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("inpod: stop accepting: %w", err)
	}
	return nil
}

// Close stops accepting and removes every pod, closing their netns handles.
func (m *Manager) Close() error {
	err := m.StopAccepting()
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	pods := slices.Collect(maps.Values(m.pods))
	clear(m.pods)
	m.mu.Unlock()
	errs := []error{err}
	for _, p := range pods {
		if err := p.remove(); err != nil {
			errs = append(errs, fmt.Errorf("inpod: close pod %s: %w", p.uid, err))
		}
	}
	return errors.Join(errs...)
}
