package authz

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
)

// FuzzCompile feeds proto-encoded Authorizations (as an xds, or an
// attacker in its place, could send) to Compile. Compile must never panic;
// it either refuses with FieldErrors, or returns a Policy that decides
// exactly as a direct reading of the proto (reference below) on
// connections built from the policy's own values.
func FuzzCompile(f *testing.F) {
	for _, a := range seedPolicies() {
		b, err := proto.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a := &securitypb.Authorization{}
		if err := proto.Unmarshal(data, a); err != nil {
			return
		}
		p, err := Compile(a)
		if err != nil {
			checkCompileError(t, a, err)
			return
		}
		for _, c := range probesFor(a) {
			want := reference(a, c)
			if got := p.Matches(c); got != want {
				t.Fatalf("Matches(%s) = %v, reference says %v; policy %v", describe(c), got, want, a)
			}
			d := Evaluate([]*Policy{p}, c)
			wantAllow := a.GetDryRun() || (a.GetAction() == securitypb.Action_DENY) != want
			if d.Allow != wantAllow {
				t.Fatalf("Evaluate(%s) = %v, want allow=%v; policy %v", describe(c), d, wantAllow, a)
			}
		}
	})
}

func checkCompileError(t *testing.T, a *securitypb.Authorization, err error) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field == "" || fe.Reason == "" {
		t.Fatalf("Compile error without a field: %v", err)
	}
	if want := a.GetNamespace() + "/" + a.GetName(); fe.Policy != want {
		t.Fatalf("FieldError names policy %q, want %q", fe.Policy, want)
	}
}

// reference evaluates a directly from the proto, written independently of
// the compiled form (addresses compared bit by bit in their 16-byte form).
func reference(a *securitypb.Authorization, c Conn) bool {
	for _, g := range a.GetGroups() {
		all := true
		for _, r := range g.GetRules() {
			anyMatch := false
			for _, m := range r.GetMatches() {
				if refMatch(m, c) {
					anyMatch = true
					break
				}
			}
			if !anyMatch {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func refMatch(m *securitypb.Match, c Conn) bool {
	id := c.SrcIdentity
	principal, ns, saName := "", "", ""
	if !id.IsZero() {
		principal = id.ID().String()[len("spiffe://"):]
		ns, saName = id.Namespace(), id.ServiceAccount()
	}
	str := func(ms []*securitypb.StringMatch, v string, ok bool) func(int) bool {
		return func(i int) bool {
			if !ok {
				return false
			}
			switch t := ms[i].GetMatchType().(type) {
			case *securitypb.StringMatch_Exact:
				return v == t.Exact
			case *securitypb.StringMatch_Prefix:
				return strings.HasPrefix(v, t.Prefix)
			case *securitypb.StringMatch_Suffix:
				return strings.HasSuffix(v, t.Suffix)
			}
			return v != ""
		}
	}
	sas := func(ms []*securitypb.ServiceAccountMatch) func(int) bool {
		return func(i int) bool {
			return ns != "" && ms[i].GetNamespace() == ns && ms[i].GetServiceAccount() == saName
		}
	}
	ips := func(as []*securitypb.Address, ip netip.Addr) func(int) bool {
		return func(i int) bool { return refContains(as[i], ip) }
	}
	ports := func(ps []uint32) func(int) bool {
		return func(i int) bool { return ps[i] == uint32(c.DstPort) }
	}
	field := func(pos, neg int, posF, negF func(int) bool) bool {
		if pos > 0 && !anyIndex(pos, posF) {
			return false
		}
		return !anyIndex(neg, negF)
	}
	return field(len(m.GetPrincipals()), len(m.GetNotPrincipals()), str(m.GetPrincipals(), principal, !id.IsZero()), str(m.GetNotPrincipals(), principal, !id.IsZero())) &&
		field(len(m.GetNamespaces()), len(m.GetNotNamespaces()), str(m.GetNamespaces(), ns, ns != ""), str(m.GetNotNamespaces(), ns, ns != "")) &&
		field(len(m.GetServiceAccounts()), len(m.GetNotServiceAccounts()), sas(m.GetServiceAccounts()), sas(m.GetNotServiceAccounts())) &&
		field(len(m.GetSourceIps()), len(m.GetNotSourceIps()), ips(m.GetSourceIps(), c.SrcIP), ips(m.GetNotSourceIps(), c.SrcIP)) &&
		field(len(m.GetDestinationIps()), len(m.GetNotDestinationIps()), ips(m.GetDestinationIps(), c.DstIP), ips(m.GetNotDestinationIps(), c.DstIP)) &&
		field(len(m.GetDestinationPorts()), len(m.GetNotDestinationPorts()), ports(m.GetDestinationPorts()), ports(m.GetNotDestinationPorts()))
}

func anyIndex(n int, f func(int) bool) bool {
	for i := range n {
		if f(i) {
			return true
		}
	}
	return false
}

// refContains: IPv4 prefixes and IPv4-mapped IPv6 prefixes of at least 96
// bits contain IPv4 addresses, other IPv6 prefixes IPv6 addresses.
func refContains(a *securitypb.Address, ip netip.Addr) bool {
	b, bits := a.GetAddress(), int(a.GetLength())
	mapped := len(b) == 16 && bits >= 96 && string(b[:12]) == "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff"
	if len(b) == 4 {
		b, bits = append([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff"), b...), bits+96
		mapped = true
	}
	ip = ip.Unmap()
	if mapped != ip.Is4() {
		return false
	}
	want := ip.As16()
	for i := range bits {
		if (b[i/8]>>(7-i%8))&1 != (want[i/8]>>(7-i%8))&1 {
			return false
		}
	}
	return true
}

// probesFor builds connections from the values a mentions (its addresses,
// ports, identities), so both sides of every match get exercised, plus a
// plaintext and an unrelated connection.
func probesFor(a *securitypb.Authorization) []Conn {
	srcs := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::1")}
	dsts := []netip.Addr{netip.MustParseAddr("10.7.0.10")}
	ports := []uint16{8080}
	ids := []spiffe.Identity{{}, spiffe.MustParse("spiffe://cluster.local/ns/ns1/sa/web")}
	addID := func(s string) {
		if id, err := spiffe.Parse("spiffe://" + s); err == nil && len(ids) < 8 {
			ids = append(ids, id)
		}
	}
	addAddr := func(dst *[]netip.Addr, ad *securitypb.Address) {
		if ip, ok := netip.AddrFromSlice(ad.GetAddress()); ok && len(*dst) < 6 {
			*dst = append(*dst, ip)
			// The address just below the prefix.
			if p, err := ip.Prefix(int(ad.GetLength())); err == nil && p.Addr().Prev().IsValid() {
				*dst = append(*dst, p.Addr().Prev())
			}
		}
	}
	for _, g := range a.GetGroups() {
		for _, r := range g.GetRules() {
			for _, m := range r.GetMatches() {
				for _, s := range append(m.GetPrincipals(), m.GetNotPrincipals()...) {
					addID(s.GetExact())
					addID(s.GetPrefix() + "x/sa/y")
					addID("cluster.local/ns/x" + s.GetSuffix())
				}
				for _, s := range append(m.GetNamespaces(), m.GetNotNamespaces()...) {
					addID("cluster.local/ns/" + s.GetExact() + s.GetPrefix() + "a" + s.GetSuffix() + "/sa/default")
				}
				for _, s := range append(m.GetServiceAccounts(), m.GetNotServiceAccounts()...) {
					addID(fmt.Sprintf("cluster.local/ns/%s/sa/%s", s.GetNamespace(), s.GetServiceAccount()))
				}
				for _, ad := range append(m.GetSourceIps(), m.GetNotSourceIps()...) {
					addAddr(&srcs, ad)
				}
				for _, ad := range append(m.GetDestinationIps(), m.GetNotDestinationIps()...) {
					addAddr(&dsts, ad)
				}
				for _, p := range append(m.GetDestinationPorts(), m.GetNotDestinationPorts()...) {
					if len(ports) < 6 {
						ports = append(ports, uint16(p), uint16(p)+1)
					}
				}
			}
		}
	}
	var out []Conn
	for _, id := range ids {
		for _, s := range srcs {
			for _, d := range dsts {
				for _, p := range ports {
					out = append(out, Conn{SrcIdentity: id, SrcIP: s, DstIP: d, DstPort: p})
				}
			}
		}
	}
	return out
}

// seedPolicies are the shapes xds emits (the authz-fields and peerauth
// goldens) plus malformed ones.
func seedPolicies() []*securitypb.Authorization {
	strict := policy("istio-system", "istio_converted_static_strict", securitypb.Action_DENY, group(rule(&securitypb.Match{NotPrincipals: strs(presenceS())})))
	dry := denyIf("dry", &securitypb.Match{Namespaces: strs(exactS("ns1"))})
	dry.DryRun = true
	return []*securitypb.Authorization{
		strict,
		policy("disable-ns", "converted_peer_authentication_strict-db", securitypb.Action_DENY, group(rule(&securitypb.Match{NotPrincipals: strs(presenceS()), NotDestinationPorts: []uint32{5432}}))),
		policy("ns1", "sources", securitypb.Action_ALLOW, group(rule(
			&securitypb.Match{Principals: strs(exactS("cluster.local/ns/ns1/sa/web"), prefixS("cluster.local/ns/ops/"), suffixS("/sa/admin"), presenceS()), NotPrincipals: strs(exactS("cluster.local/ns/ns1/sa/blocked"))},
			&securitypb.Match{Namespaces: strs(exactS("ns1"), prefixS("team-")), NotNamespaces: strs(exactS("ns1-sandbox"))},
			&securitypb.Match{ServiceAccounts: []*securitypb.ServiceAccountMatch{sa("ns1", "web"), sa("ops", "deployer")}, NotServiceAccounts: []*securitypb.ServiceAccountMatch{sa("ns1", "untrusted")}},
			&securitypb.Match{SourceIps: addrs("10.0.0.0/8", "192.168.1.7", "2001:db8::/32"), NotSourceIps: addrs("10.9.0.0/16")},
		))),
		policy("ns1", "operations-and-conditions", securitypb.Action_ALLOW, group(
			rule(&securitypb.Match{DestinationPorts: []uint32{8080, 9090}}, &securitypb.Match{NotDestinationPorts: []uint32{15020}}),
			rule(&securitypb.Match{SourceIps: addrs("10.1.0.0/16"), NotSourceIps: addrs("10.1.2.3")}),
			rule(&securitypb.Match{DestinationIps: addrs("10.7.0.10"), NotDestinationIps: addrs("::ffff:10.7.0.0/120")}),
		)),
		policy("ns1", "deny-l7", securitypb.Action_DENY, group(rule(&securitypb.Match{DestinationPorts: []uint32{8080}})), group(rule(&securitypb.Match{}))),
		policy("ns2", "allow-all", securitypb.Action_ALLOW, group()),
		policy("ns2", "allow-nothing", securitypb.Action_ALLOW),
		dry,
		allowIf("bad-port", &securitypb.Match{DestinationPorts: []uint32{70000}}),
		allowIf("bad-address", &securitypb.Match{SourceIps: []*securitypb.Address{{Address: []byte{1, 2, 3}, Length: 8}}}),
		allowIf("bad-length", &securitypb.Match{DestinationIps: []*securitypb.Address{{Address: []byte{1, 2, 3, 4}, Length: 40}}}),
		allowIf("untyped", &securitypb.Match{Principals: strs(&securitypb.StringMatch{})}),
		{Name: "bad-action", Namespace: "ns1", Action: 5, Scope: 4},
	}
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzCompile from
// seedPolicies when UPDATE_FUZZ_CORPUS=1, so the seeds also run as plain
// tests from files and a fuzz run starts from them.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("UPDATE_FUZZ_CORPUS") == "" {
		t.Skip("set UPDATE_FUZZ_CORPUS=1 to rewrite testdata/fuzz/FuzzCompile")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzCompile")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range seedPolicies() {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, "seed-"+a.GetNamespace()+"-"+a.GetName()), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
