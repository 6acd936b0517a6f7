package netns

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// tenNet is the only range the topology will use: it never touches
// addresses that could be real.
var tenNet = netip.MustParsePrefix("10.0.0.0/8")

func validatePool(what string, p netip.Prefix, maxBits int) error {
	switch {
	case !p.IsValid() || !p.Addr().Is4():
		return fmt.Errorf("%s %v: must be an IPv4 prefix", what, p)
	case p != p.Masked():
		return fmt.Errorf("%s %v: host bits set, want %v", what, p, p.Masked())
	case !tenNet.Contains(p.Addr()) || p.Bits() < tenNet.Bits():
		return fmt.Errorf("%s %v: must lie within %v", what, p, tenNet)
	case p.Bits() > maxBits:
		return fmt.Errorf("%s %v: too small, want at most /%d", what, p, maxBits)
	}
	return nil
}

func toUint(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func fromUint(u uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], u)
	return netip.AddrFrom4(b)
}

// nthHost returns the n-th address of p (n=1 is the first after the network
// address), refusing the broadcast address and anything outside p.
func nthHost(p netip.Prefix, n int) (netip.Addr, error) {
	size := uint64(1) << (32 - p.Bits())
	if n < 1 || uint64(n) >= size-1 {
		return netip.Addr{}, fmt.Errorf("host %d outside the usable range of %v", n, p)
	}
	return fromUint(toUint(p.Addr()) + uint32(n)), nil
}

// nthSubnet returns the n-th prefix of length bits inside pool (n from 0).
func nthSubnet(pool netip.Prefix, bits, n int) (netip.Prefix, error) {
	count := uint64(1) << (bits - pool.Bits())
	if n < 0 || uint64(n) >= count {
		return netip.Prefix{}, fmt.Errorf("subnet %d outside %v split into /%d", n, pool, bits)
	}
	base := toUint(pool.Addr()) + uint32(n)<<(32-bits)
	return netip.PrefixFrom(fromUint(base), bits), nil
}

// ipNet converts addr inside p to the form netlink wants.
func ipNet(addr netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}

func prefixNet(p netip.Prefix) *net.IPNet { return ipNet(p.Addr(), p.Bits()) }

// newBridgeMAC returns a random locally administered unicast MAC. A bridge
// with an explicit MAC keeps it as ports come and go; otherwise it takes its
// lowest port's MAC, which changes as pods come and go and leaves stale
// gateway entries in pods' ARP caches.
func newBridgeMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("bridge mac: %w", err)
	}
	mac[0] = mac[0]&^0x01 | 0x02
	return mac, nil
}
