package store

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"

	"github.com/ambitmesh/ambit/services/config/internal/resource"
)

// Address pools. Services get cluster IPs from the service CIDRs, as
// Kubernetes does; ServiceEntries without addresses get one VIP per
// non-wildcard host, written to status.addresses, as Istio's automatic
// allocation does (its default range is 240.240.0.0/16).
const (
	poolServiceIP    = "service-ip"
	poolServiceEntry = "serviceentry-vip"
)

// pool hands out addresses from a set of prefixes. Candidates are drawn at
// random so concurrent replicas rarely pick the same one; the transaction's
// "key absent" compare on the allocation key settles the races that remain.
type pool struct {
	name     string
	prefixes []netip.Prefix
}

// contains reports whether ip is in one of the pool's prefixes.
func (p *pool) contains(ip netip.Addr) bool {
	for _, pr := range p.prefixes {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

// family picks the prefix of the requested family (IPv4 first by default).
func (p *pool) prefixFor(v6 bool) (netip.Prefix, bool) {
	for _, pr := range p.prefixes {
		if pr.Addr().Is6() == v6 {
			return pr, true
		}
	}
	return netip.Prefix{}, false
}

// candidate returns a random usable address of prefix pr not in taken; it
// skips the network and (IPv4) broadcast addresses.
func candidate(pr netip.Prefix, taken map[netip.Addr]bool) (netip.Addr, bool) {
	bits := pr.Addr().BitLen() - pr.Bits()
	if bits < 2 {
		return netip.Addr{}, false
	}
	size := new(big.Int).Lsh(big.NewInt(1), uint(bits))
	usable := new(big.Int).Sub(size, big.NewInt(2)) // minus network and last
	base := new(big.Int).SetBytes(pr.Masked().Addr().AsSlice())
	// A few random probes, then a linear scan from a random start, so a
	// nearly full pool still finds its last free addresses.
	n := usable.Uint64()
	if !usable.IsUint64() || n > 1<<62 {
		n = 1 << 62
	}
	start := rand.Uint64N(n)
	for i := uint64(0); i < n && i < 1<<20; i++ {
		off := (start+i)%n + 1
		ip := addrFromInt(new(big.Int).Add(base, new(big.Int).SetUint64(off)), pr.Addr().Is6())
		if !taken[ip] {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func addrFromInt(v *big.Int, v6 bool) netip.Addr {
	n := 4
	if v6 {
		n = 16
	}
	b := v.FillBytes(make([]byte, n))
	ip, _ := netip.AddrFromSlice(b)
	return ip
}

// serviceClusterIPs returns the cluster IPs a Service holds ("None" and
// empty are not addresses).
func serviceClusterIPs(spec *corev1.ServiceSpec) []netip.Addr {
	var out []netip.Addr
	seen := map[string]bool{}
	for _, s := range append([]string{spec.ClusterIP}, spec.ClusterIPs...) {
		if s == "" || s == corev1.ClusterIPNone || seen[s] {
			continue
		}
		seen[s] = true
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

// needsClusterIP: ExternalName services and headless ones get none.
func needsClusterIP(spec *corev1.ServiceSpec) bool {
	return spec.Type != corev1.ServiceTypeExternalName && spec.ClusterIP != corev1.ClusterIPNone
}

// seAddress is one entry of a ServiceEntry's status.addresses.
type seAddress struct {
	Value string `json:"value"`
	Host  string `json:"host,omitempty"`
}

// seStatusAddresses reads status.addresses, keeping the rest of the status.
func seStatusAddresses(status json.RawMessage) (map[string]json.RawMessage, []seAddress, error) {
	fields := map[string]json.RawMessage{}
	if len(status) > 0 && string(status) != "null" {
		if err := json.Unmarshal(status, &fields); err != nil {
			return nil, nil, fmt.Errorf("status: %w", err)
		}
	}
	var addrs []seAddress
	if raw, ok := fields["addresses"]; ok {
		if err := json.Unmarshal(raw, &addrs); err != nil {
			return nil, nil, fmt.Errorf("status.addresses: %w", err)
		}
	}
	return fields, addrs, nil
}

// seNeedsVIPs returns the hosts of a ServiceEntry that get an automatic VIP:
// none when the entry lists addresses itself, and never wildcard hosts.
func seNeedsVIPs(spec *networkingv1alpha3.ServiceEntry) []string {
	if len(spec.GetAddresses()) > 0 {
		return nil
	}
	var hosts []string
	for _, h := range spec.GetHosts() {
		if !strings.HasPrefix(h, "*") && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// objectAddresses lists the pool addresses an object holds, by pool.
func objectAddresses(o *resource.Object) map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	switch spec := o.Spec.(type) {
	case *corev1.ServiceSpec:
		out[poolServiceIP] = serviceClusterIPs(spec)
	case *networkingv1alpha3.ServiceEntry:
		_, addrs, err := seStatusAddresses(o.Status)
		if err != nil {
			return out
		}
		for _, a := range addrs {
			if ip, err := netip.ParseAddr(a.Value); err == nil {
				out[poolServiceEntry] = append(out[poolServiceEntry], ip)
			}
		}
	}
	return out
}
