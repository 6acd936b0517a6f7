package authz

import (
	"net/netip"
	"testing"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
)

// Builders that keep the tables readable: policy(name, action, groups…),
// group(rules…), rule(matches…), and the StringMatch/Address forms.

func policy(ns, name string, action securitypb.Action, groups ...*securitypb.Group) *securitypb.Authorization {
	return &securitypb.Authorization{Name: name, Namespace: ns, Scope: securitypb.Scope_WORKLOAD_SELECTOR, Action: action, Groups: groups}
}

// allowIf and denyIf are the common shape: one group, one rule, one match.
func allowIf(name string, m *securitypb.Match) *securitypb.Authorization {
	return policy("ns1", name, securitypb.Action_ALLOW, group(rule(m)))
}

func denyIf(name string, m *securitypb.Match) *securitypb.Authorization {
	return policy("ns1", name, securitypb.Action_DENY, group(rule(m)))
}

func group(rules ...*securitypb.Rules) *securitypb.Group { return &securitypb.Group{Rules: rules} }

func rule(ms ...*securitypb.Match) *securitypb.Rules { return &securitypb.Rules{Matches: ms} }

func exactS(s string) *securitypb.StringMatch {
	return &securitypb.StringMatch{MatchType: &securitypb.StringMatch_Exact{Exact: s}}
}

func prefixS(s string) *securitypb.StringMatch {
	return &securitypb.StringMatch{MatchType: &securitypb.StringMatch_Prefix{Prefix: s}}
}

func suffixS(s string) *securitypb.StringMatch {
	return &securitypb.StringMatch{MatchType: &securitypb.StringMatch_Suffix{Suffix: s}}
}

func presenceS() *securitypb.StringMatch {
	return &securitypb.StringMatch{MatchType: &securitypb.StringMatch_Presence{Presence: &emptypb.Empty{}}}
}

func strs(ms ...*securitypb.StringMatch) []*securitypb.StringMatch { return ms }

func sa(ns, name string) *securitypb.ServiceAccountMatch {
	return &securitypb.ServiceAccountMatch{Namespace: ns, ServiceAccount: name}
}

// cidr turns "10.0.0.0/8" or a bare address into an Address as xds sends
// it: 4 bytes for IPv4, 16 for IPv6.
func cidr(s string) *securitypb.Address {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a := netip.MustParseAddr(s)
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return &securitypb.Address{Address: p.Addr().AsSlice(), Length: uint32(p.Bits())}
}

func addrs(ss ...string) []*securitypb.Address {
	out := make([]*securitypb.Address, len(ss))
	for i, s := range ss {
		out[i] = cidr(s)
	}
	return out
}

// conn builds a connection; id "" is a plaintext source.
func conn(id, src, dst string, port uint16) Conn {
	c := Conn{SrcIP: netip.MustParseAddr(src), DstIP: netip.MustParseAddr(dst), DstPort: port}
	if id != "" {
		c.SrcIdentity = spiffe.MustParse(id)
	}
	return c
}

func mustCompileAll(t testing.TB, as ...*securitypb.Authorization) []*Policy {
	t.Helper()
	ps := make([]*Policy, len(as))
	for i, a := range as {
		p, err := Compile(a)
		if err != nil {
			t.Fatalf("Compile(%s/%s): %v", a.GetNamespace(), a.GetName(), err)
		}
		ps[i] = p
	}
	return ps
}
