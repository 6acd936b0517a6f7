package netns

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from
// linux/netfilter_ipv6/ip6_tables.h, which x/sys/unix does not define; it
// has the same value as SO_ORIGINAL_DST.
const ip6tSOOriginalDst = 80

// OriginalDst returns where a connection accepted on a pod's listener was
// headed before redirection changed its destination: the conntrack entry's
// original destination, read with getsockopt(SOL_IP, SO_ORIGINAL_DST) or,
// for IPv6, getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) (DESIGN §11). Both
// redirection modes answer it (eBPF through a cgroup/getsockopt program),
// so the proxy has one code path. For a connection that was not redirected
// it is the connection's own local address; in a netns where conntrack
// tracks nothing (no NAT rule there) it fails with an error wrapping
// unix.ENOENT. An IPv4 address comes back as a plain IPv4 address even when
// the listener is dual-stack.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok || local == nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: connection has no local address")
	}
	// A v4 connection on a dual-stack listener has a v4-mapped local
	// address, but conntrack and the socket's IPv4 options still answer it.
	v4 := local.AddrPort().Addr().Unmap().Is4()
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	var dst netip.AddrPort
	var sysErr error
	err = rc.Control(func(fd uintptr) {
		if v4 {
			dst, sysErr = origDst4(int(fd))
		} else {
			dst, sysErr = origDst6(int(fd))
		}
	})
	if err == nil {
		err = sysErr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination of %v -> %v: %w", c.RemoteAddr(), local, err)
	}
	return dst, nil
}

// origDst4 reads a struct sockaddr_in; x/sys/unix has no typed getter for it.
func origDst4(fd int) (netip.AddrPort, error) {
	var sa unix.RawSockaddrInet4
	size := uint32(unsafe.Sizeof(sa))
	if err := getsockopt(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST, unsafe.Pointer(&sa), &size); err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port)), nil
}

// origDst6 reads a struct sockaddr_in6.
func origDst6(fd int) (netip.AddrPort, error) {
	var sa unix.RawSockaddrInet6
	size := uint32(unsafe.Sizeof(sa))
	if err := getsockopt(fd, unix.SOL_IPV6, ip6tSOOriginalDst, unsafe.Pointer(&sa), &size); err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt IP6T_SO_ORIGINAL_DST: %w", err)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), ntohs(sa.Port)), nil
}

func getsockopt(fd, level, opt int, val unsafe.Pointer, size *uint32) error {
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(val), uintptr(unsafe.Pointer(size)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// ntohs converts a port as the kernel stores it (network order) to a number.
func ntohs(p uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], p)
	return binary.BigEndian.Uint16(b[:])
}
