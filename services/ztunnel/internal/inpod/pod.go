package inpod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ambitmesh/ambit/pkg/netns"
	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

// Kind names one of a pod's listeners.
type Kind int

// The listeners of a pod, in the order of DESIGN §5's ports.
const (
	Outbound Kind = iota
	InboundPlaintext
	InboundHBONE
	numKinds
)

func (k Kind) String() string {
	switch k {
	case Outbound:
		return "outbound"
	case InboundPlaintext:
		return "inbound_plaintext"
	case InboundHBONE:
		return "inbound_hbone"
	default:
		return fmt.Sprintf("kind(%d)", int(k))
	}
}

// Pod is one pod served by the Manager. Its fields never change; a re-add
// with another netns makes a new Pod. Safe for concurrent use.
type Pod struct {
	uid    string
	info   *zdspb.WorkloadInfo
	ns     *netns.Handle
	inode  uint64
	ips    []netip.Addr
	dialer *net.Dialer
	log    *slog.Logger

	lns  [numKinds]*net.TCPListener
	stop chan struct{} // closed when the listeners close; ends accept backoff
	wg   sync.WaitGroup

	done       chan struct{} // closed once the pod is removed
	stopOnce   sync.Once
	removeOnce sync.Once
	removeErr  error
}

// UID is the pod's metadata.uid, the ZDS key.
func (p *Pod) UID() string { return p.uid }

// Info is the workload info from ZDS (name, namespace, service account).
// Shared: do not modify it.
func (p *Pod) Info() *zdspb.WorkloadInfo { return p.info }

// Name is the pod's name.
func (p *Pod) Name() string { return p.info.GetName() }

// Namespace is the pod's Kubernetes namespace.
func (p *Pod) Namespace() string { return p.info.GetNamespace() }

// ServiceAccount is the pod's service account, the identity its
// certificate is issued for.
func (p *Pod) ServiceAccount() string { return p.info.GetServiceAccount() }

// Netns is the pod's network namespace; it is closed when the pod is
// removed.
func (p *Pod) Netns() *netns.Handle { return p.ns }

// IPs are the addresses of the pod's non-loopback interfaces (link-local
// ones left out), read from inside its netns when it was added.
func (p *Pod) IPs() []netip.Addr { return slices.Clone(p.ips) }

// Addr is the address of one of the pod's listeners, as seen inside its
// netns.
func (p *Pod) Addr(k Kind) net.Addr {
	if k < 0 || k >= numKinds {
		return nil
	}
	return p.lns[k].Addr()
}

// Done is closed when the pod is removed (Del, left out of a snapshot,
// replaced by a re-add with another netns, Manager.Close): the signal for
// the proxy to drain the pod's established connections.
func (p *Pod) Done() <-chan struct{} { return p.done }

func (p *Pod) String() string {
	return p.info.GetNamespace() + "/" + p.info.GetName() + " (" + p.uid + ")"
}

// Dial connects from inside the pod's netns with ztunnel's mark, so the
// packets leave with the pod's own address and redirection skips them. addr
// must be an IP literal and port: a name would be resolved on other
// threads, outside the netns. It has the shape of a DialContext func, for
// HTTP/2 transports. It fails once the pod is removed.
func (p *Pod) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := p.ns.Dial(ctx, p.dialer, network, addr)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", p, err)
	}
	return c, nil
}

// serve accepts on one listener until it is closed, handing each
// connection to h in a goroutine of its own.
func (p *Pod) serve(k Kind, h func(*Pod, *net.TCPConn)) {
	defer p.wg.Done()
	ln := p.lns[k]
	var backoff time.Duration
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or memory: back off as net/http does
			// rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed, retrying", "listener", k.String(), "error", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-p.stop:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		go h(p, c)
	}
}

// stopAccepting closes the listeners and waits for the accept loops.
// Connections still in a closing listener's queue move to another
// SO_REUSEPORT listener of the port if tcp_migrate_req is set.
func (p *Pod) stopAccepting() error {
	var errs []error
	p.stopOnce.Do(func() {
		close(p.stop)
		for k, ln := range p.lns {
			if ln == nil {
				continue
			}
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("close %s listener: %w", Kind(k), err))
			}
		}
	})
	p.wg.Wait()
	return errors.Join(errs...)
}

// remove stops the listeners, releases the netns handle and closes Done.
func (p *Pod) remove() error {
	p.removeOnce.Do(func() {
		err := p.stopAccepting()
		close(p.done)
		p.removeErr = errors.Join(err, p.ns.Close())
	})
	return p.removeErr
}

// podIPs lists the global and site addresses of every non-loopback link,
// through a netlink handle whose socket lives in the pod's netns.
func podIPs(nh *netlink.Handle) ([]netip.Addr, error) {
	var links []netlink.Link
	var addrs []netlink.Addr
	var err error
	// A dump raced by a change is flagged as interrupted; ask again.
	for range 5 {
		links, err = nh.LinkList()
		if err == nil {
			addrs, err = nh.AddrList(nil, netlink.FAMILY_ALL)
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	loopback := make(map[int]bool)
	for _, l := range links {
		if a := l.Attrs(); a.Flags&net.FlagLoopback != 0 {
			loopback[a.Index] = true
		}
	}
	var ips []netip.Addr
	for _, a := range addrs {
		if loopback[a.LinkIndex] || a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
			continue
		}
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return slices.Compact(ips), nil
}
