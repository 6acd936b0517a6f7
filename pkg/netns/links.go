package netns

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// withRoute runs fn with a rtnetlink handle bound to ns. Only the route
// family is opened: every call below is rtnetlink, and the library would
// put any other family's socket in the host namespace.
func withRoute(ns *Handle, fn func(nh *netlink.Handle) error) error {
	nh, err := ns.Netlink(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer nh.Close()
	return fn(nh)
}

func setLinksUp(ns *Handle, names ...string) error {
	return withRoute(ns, func(nh *netlink.Handle) error {
		for _, name := range names {
			link, err := nh.LinkByName(name)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := nh.LinkSetUp(link); err != nil {
				return fmt.Errorf("set %s up: %w", name, err)
			}
		}
		return nil
	})
}

// addBridge creates a bridge with a fixed MAC in ns and records its removal.
func (t *Topology) addBridge(undo *undoStack, ns *Handle, name string) error {
	mac, err := newBridgeMAC()
	if err != nil {
		return err
	}
	err = withRoute(ns, func(nh *netlink.Handle) error {
		return nh.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}})
	})
	if err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	undo.pushIndependent("bridge "+name+" in "+ns.String(), func() error { return deleteLink(ns, name) })
	return nil
}

// addVeth creates a veth pair with one end in ns and the other, peerName,
// directly in peerNS, so neither end ever exists in the host namespace. It
// records the removal of the pair.
func addVeth(undo *undoStack, ns *Handle, name string, peerNS *Handle, peerName string) error {
	err := peerNS.withFd(func(peerFd int) error {
		return withRoute(ns, func(nh *netlink.Handle) error {
			return nh.LinkAdd(&netlink.Veth{
				LinkAttrs:     netlink.LinkAttrs{Name: name},
				PeerName:      peerName,
				PeerNamespace: netlink.NsFd(peerFd),
			})
		})
	})
	if err != nil {
		return fmt.Errorf("create veth %s (peer %s in %s): %w", name, peerName, peerNS, err)
	}
	undo.pushIndependent("veth "+name+" in "+ns.String(), func() error { return deleteLink(ns, name) })
	return nil
}

// deleteLink deletes a link; one already gone is not an error.
func deleteLink(ns *Handle, name string) error {
	return withRoute(ns, func(nh *netlink.Handle) error {
		link, err := nh.LinkByName(name)
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := nh.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete link %s: %w", name, err)
		}
		return nil
	})
}

// attachUp enslaves port to bridge and sets it up.
func attachUp(ns *Handle, port, bridge string) error {
	return withRoute(ns, func(nh *netlink.Handle) error {
		p, err := nh.LinkByName(port)
		if err != nil {
			return fmt.Errorf("%s: %w", port, err)
		}
		br, err := nh.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("%s: %w", bridge, err)
		}
		if err := nh.LinkSetMaster(p, br); err != nil {
			return fmt.Errorf("attach %s to %s: %w", port, bridge, err)
		}
		if err := nh.LinkSetUp(p); err != nil {
			return fmt.Errorf("set %s up: %w", port, err)
		}
		return nil
	})
}

// addrUp assigns addr/bits to a link and sets it up.
func addrUp(ns *Handle, name string, addr netip.Addr, bits int) error {
	return withRoute(ns, func(nh *netlink.Handle) error {
		link, err := nh.LinkByName(name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := nh.AddrAdd(link, &netlink.Addr{IPNet: ipNet(addr, bits)}); err != nil {
			return fmt.Errorf("add %v/%d to %s: %w", addr, bits, name, err)
		}
		if err := nh.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", name, err)
		}
		return nil
	})
}

// route is dst via gw out of dev; a zero dst is the default route.
type route struct {
	dst netip.Prefix
	gw  netip.Addr
	dev string
}

func (r route) String() string {
	dst := "default"
	if r.dst.IsValid() {
		dst = r.dst.String()
	}
	return fmt.Sprintf("%s via %v dev %s", dst, r.gw, r.dev)
}

func (r route) netlink(nh *netlink.Handle) (*netlink.Route, error) {
	link, err := nh.LinkByName(r.dev)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.dev, err)
	}
	nr := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: r.gw.AsSlice()}
	if r.dst.IsValid() {
		nr.Dst = prefixNet(r.dst)
	}
	return nr, nil
}

func addRoute(ns *Handle, r route) error {
	return withRoute(ns, func(nh *netlink.Handle) error {
		nr, err := r.netlink(nh)
		if err == nil {
			err = nh.RouteAdd(nr)
		}
		if err != nil {
			return fmt.Errorf("add route %s: %w", r, err)
		}
		return nil
	})
}

// delRoute deletes a route; one already gone (with its device) is not an error.
func delRoute(ns *Handle, r route) error {
	return withRoute(ns, func(nh *netlink.Handle) error {
		nr, err := r.netlink(nh)
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return nil
		}
		if err == nil {
			err = nh.RouteDel(nr)
		}
		if err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete route %s: %w", r, err)
		}
		return nil
	})
}
