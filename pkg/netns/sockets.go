package netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"
)

// Listen creates a listener inside the namespace; it keeps serving there
// when used from any goroutine. lc may be nil; set lc.Control for options
// such as SO_REUSEPORT or SO_MARK. The host part of address must be an IP
// literal or empty (see checkLiteral).
func (h *Handle) Listen(ctx context.Context, lc *net.ListenConfig, network, address string) (net.Listener, error) {
	if err := checkLiteral(network, address); err != nil {
		return nil, fmt.Errorf("netns %q: listen: %w", h.label, err)
	}
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = lc.Listen(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %q: listen %s %s: %w", h.label, network, address, err)
	}
	return ln, nil
}

// ListenPacket is Listen for packet-oriented networks (udp, ip, unixgram).
func (h *Handle) ListenPacket(ctx context.Context, lc *net.ListenConfig, network, address string) (net.PacketConn, error) {
	if err := checkLiteral(network, address); err != nil {
		return nil, fmt.Errorf("netns %q: listen: %w", h.label, err)
	}
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	var pc net.PacketConn
	err := h.Do(func() error {
		var err error
		pc, err = lc.ListenPacket(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %q: listen %s %s: %w", h.label, network, address, err)
	}
	return pc, nil
}

// Dial connects from inside the namespace, so packets leave with the
// namespace's addresses and routes. d may be nil. The host part of address
// must be an IP literal (see checkLiteral).
func (h *Handle) Dial(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	if err := checkLiteral(network, address); err != nil {
		return nil, fmt.Errorf("netns %q: dial: %w", h.label, err)
	}
	if d == nil {
		d = &net.Dialer{}
	}
	var conn net.Conn
	err := h.Do(func() error {
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %q: dial %s %s: %w", h.label, network, address, err)
	}
	return conn, nil
}

// Dialer returns a DialContext function (as http.Transport and gRPC want)
// that dials from inside the namespace with d (nil for defaults).
func (h *Handle) Dialer(d *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		return h.Dial(ctx, d, network, address)
	}
}

// checkLiteral rejects host names. Go resolves names and races dual-stack
// dials on other goroutines — other threads, outside the namespace — so only
// IP literals (or an empty host) give a socket that is surely in it. Unix
// sockets carry no host.
func checkLiteral(network, address string) error {
	var host string
	switch {
	case strings.HasPrefix(network, "unix"):
		return nil
	case strings.HasPrefix(network, "ip"): // "ip4:icmp": address is a bare host
		host = address
	default:
		var err error
		host, _, err = net.SplitHostPort(address)
		if err != nil {
			return err
		}
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("address %q: host must be an IP literal: name resolution would run outside the namespace", address)
	}
	return nil
}

// Cookie returns the namespace's cookie: the 64-bit id eBPF programs see via
// bpf_get_netns_cookie, unique for the life of the system.
func (h *Handle) Cookie() (uint64, error) {
	var cookie uint64
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("netns %q: cookie: %w", h.label, err)
	}
	return cookie, nil
}
