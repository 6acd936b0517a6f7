package authz

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
)

const (
	web     = "spiffe://cluster.local/ns/ns1/sa/web"
	db      = "spiffe://cluster.local/ns/ns1/sa/db"
	blocked = "spiffe://cluster.local/ns/ns1/sa/blocked"
	ns2web  = "spiffe://cluster.local/ns/ns2/sa/web"
	deploy  = "spiffe://cluster.local/ns/ops/sa/deployer"
	admin   = "spiffe://cluster.local/ns/ns9/sa/admin"
	teamA   = "spiffe://cluster.local/ns/team-a/sa/default"
	kubeSys = "spiffe://cluster.local/ns/kube-system/sa/default"
	foreign = "spiffe://example.org/ns/ns1/sa/web"
)

// probe is one connection and what Evaluate must decide for it.
type probe struct {
	conn   Conn
	allow  bool
	policy string // deciding policy key, "" when none
	reason Reason
}

func allowed(c Conn, policy string) probe {
	return probe{conn: c, allow: true, policy: policy, reason: AllowMatched}
}

func allowedNoPolicy(c Conn) probe { return probe{conn: c, allow: true, reason: NoAllowPolicy} }

func deniedBy(c Conn, policy string) probe {
	return probe{conn: c, policy: policy, reason: DenyMatched}
}

func notAllowed(c Conn) probe { return probe{conn: c, reason: NoAllowMatched} }

// TestEvaluate has one row per rule shape of DESIGN §5; each row checks the
// connections that must and must not match it.
func TestEvaluate(t *testing.T) {
	at := func(id string, port uint16) Conn { return conn(id, "10.1.2.3", "10.7.0.10", port) }
	from := func(id, src string) Conn { return conn(id, src, "10.7.0.10", 8080) }
	to := func(dst string, port uint16) Conn { return conn(web, "10.1.2.3", dst, port) }
	plain := func(port uint16) Conn { return conn("", "10.1.2.3", "10.7.0.10", port) }
	dryRun := func(a *securitypb.Authorization) *securitypb.Authorization { a.DryRun = true; return a }

	tests := []struct {
		name     string
		policies []*securitypb.Authorization
		probes   []probe
	}{
		{
			name:   "no policies allows",
			probes: []probe{allowedNoPolicy(at(web, 8080)), allowedNoPolicy(plain(8080))},
		},
		{
			name:     "principal exact",
			policies: list(allowIf("p", &securitypb.Match{Principals: strs(exactS("cluster.local/ns/ns1/sa/web"))})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), notAllowed(at(db, 8080)), notAllowed(at(foreign, 8080)), notAllowed(plain(8080))},
		},
		{
			name:     "principal exact with spiffe scheme never matches (Istio form has none)",
			policies: list(allowIf("p", &securitypb.Match{Principals: strs(exactS(web))})),
			probes:   []probe{notAllowed(at(web, 8080))},
		},
		{
			name:     "principal prefix",
			policies: list(allowIf("p", &securitypb.Match{Principals: strs(prefixS("cluster.local/ns/ops/"))})),
			probes:   []probe{allowed(at(deploy, 8080), "ns1/p"), notAllowed(at(web, 8080)), notAllowed(plain(8080))},
		},
		{
			name:     "principal suffix",
			policies: list(allowIf("p", &securitypb.Match{Principals: strs(suffixS("/sa/admin"))})),
			probes:   []probe{allowed(at(admin, 8080), "ns1/p"), notAllowed(at(web, 8080)), notAllowed(plain(8080))},
		},
		{
			name:     "principal presence: any mTLS peer",
			policies: list(allowIf("p", &securitypb.Match{Principals: strs(presenceS())})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), allowed(at(foreign, 8080), "ns1/p"), notAllowed(plain(8080))},
		},
		{
			name:     "not_principals exact",
			policies: list(allowIf("p", &securitypb.Match{NotPrincipals: strs(exactS("cluster.local/ns/ns1/sa/blocked"))})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), notAllowed(at(blocked, 8080)), allowed(plain(8080), "ns1/p")},
		},
		{
			name:     "not_principals prefix and suffix",
			policies: list(allowIf("p", &securitypb.Match{NotPrincipals: strs(prefixS("cluster.local/ns/ops/"), suffixS("/sa/admin"))})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), notAllowed(at(deploy, 8080)), notAllowed(at(admin, 8080))},
		},
		{
			name:     "namespace exact",
			policies: list(allowIf("p", &securitypb.Match{Namespaces: strs(exactS("ns1"))})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), allowed(at(foreign, 8080), "ns1/p"), notAllowed(at(ns2web, 8080)), notAllowed(plain(8080))},
		},
		{
			name:     "namespace prefix",
			policies: list(allowIf("p", &securitypb.Match{Namespaces: strs(prefixS("team-"))})),
			probes:   []probe{allowed(at(teamA, 8080), "ns1/p"), notAllowed(at(web, 8080))},
		},
		{
			name:     "namespace presence",
			policies: list(allowIf("p", &securitypb.Match{Namespaces: strs(presenceS())})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), notAllowed(plain(8080))},
		},
		{
			name:     "not_namespaces",
			policies: list(allowIf("p", &securitypb.Match{NotNamespaces: strs(prefixS("kube-"))})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), notAllowed(at(kubeSys, 8080)), allowed(plain(8080), "ns1/p")},
		},
		{
			name:     "service account needs namespace and name",
			policies: list(allowIf("p", &securitypb.Match{ServiceAccounts: []*securitypb.ServiceAccountMatch{sa("ns1", "web")}})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), notAllowed(at(ns2web, 8080)), notAllowed(at(db, 8080)), notAllowed(plain(8080))},
		},
		{
			name:     "not_service_accounts",
			policies: list(allowIf("p", &securitypb.Match{NotServiceAccounts: []*securitypb.ServiceAccountMatch{sa("ns1", "blocked")}})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), notAllowed(at(blocked, 8080)), allowed(plain(8080), "ns1/p")},
		},
		{
			name:     "source IP block",
			policies: list(allowIf("p", &securitypb.Match{SourceIps: addrs("10.0.0.0/8")})),
			probes:   []probe{allowed(from(web, "10.1.2.3"), "ns1/p"), allowed(from("", "10.255.0.1"), "ns1/p"), notAllowed(from(web, "192.168.1.7")), notAllowed(from(web, "2001:db8::1"))},
		},
		{
			name:     "source IP single address and host bits ignored",
			policies: list(allowIf("p", &securitypb.Match{SourceIps: []*securitypb.Address{cidr("192.168.1.7"), {Address: []byte{172, 16, 9, 9}, Length: 16}}})),
			probes:   []probe{allowed(from(web, "192.168.1.7"), "ns1/p"), allowed(from(web, "172.16.0.1"), "ns1/p"), notAllowed(from(web, "192.168.1.8"))},
		},
		{
			name:     "source IPv6 block",
			policies: list(allowIf("p", &securitypb.Match{SourceIps: addrs("2001:db8::/32")})),
			probes:   []probe{allowed(from(web, "2001:db8:1::5"), "ns1/p"), notAllowed(from(web, "2001:db9::1")), notAllowed(from(web, "10.1.2.3"))},
		},
		{
			name:     "IPv4-mapped source compares as IPv4",
			policies: list(allowIf("p", &securitypb.Match{SourceIps: addrs("10.0.0.0/8")})),
			probes:   []probe{allowed(from(web, "::ffff:10.1.2.3"), "ns1/p"), notAllowed(from(web, "::ffff:11.1.2.3"))},
		},
		{
			name:     "IPv4-mapped prefix compares as IPv4",
			policies: list(allowIf("p", &securitypb.Match{SourceIps: addrs("::ffff:10.0.0.0/104")})),
			probes:   []probe{allowed(from(web, "10.1.2.3"), "ns1/p"), notAllowed(from(web, "11.1.2.3"))},
		},
		{
			name:     "not_source_ips",
			policies: list(allowIf("p", &securitypb.Match{SourceIps: addrs("10.0.0.0/8"), NotSourceIps: addrs("10.9.0.0/16")})),
			probes:   []probe{allowed(from(web, "10.1.2.3"), "ns1/p"), notAllowed(from(web, "10.9.1.1")), notAllowed(from(web, "192.168.0.1"))},
		},
		{
			name:     "destination IP",
			policies: list(allowIf("p", &securitypb.Match{DestinationIps: addrs("10.7.0.10")})),
			probes:   []probe{allowed(to("10.7.0.10", 8080), "ns1/p"), notAllowed(to("10.7.0.11", 8080))},
		},
		{
			name:     "not_destination_ips",
			policies: list(allowIf("p", &securitypb.Match{NotDestinationIps: addrs("10.7.0.0/24")})),
			probes:   []probe{allowed(to("10.7.1.10", 8080), "ns1/p"), notAllowed(to("10.7.0.10", 8080))},
		},
		{
			name:     "destination port",
			policies: list(allowIf("p", &securitypb.Match{DestinationPorts: []uint32{8080}})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), allowed(plain(8080), "ns1/p"), notAllowed(at(web, 9090))},
		},
		{
			name:     "not_destination_ports",
			policies: list(allowIf("p", &securitypb.Match{NotDestinationPorts: []uint32{15020, 15021}})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), notAllowed(at(web, 15020)), notAllowed(at(web, 15021))},
		},
		{
			name:     "OR within a field",
			policies: list(allowIf("p", &securitypb.Match{DestinationPorts: []uint32{8080, 9090}, Namespaces: strs(exactS("ns2"), exactS("ns1"))})),
			probes:   []probe{allowed(at(web, 9090), "ns1/p"), allowed(at(ns2web, 8080), "ns1/p"), notAllowed(at(web, 7070)), notAllowed(at(teamA, 8080))},
		},
		{
			name:     "AND across fields of a match",
			policies: list(allowIf("p", &securitypb.Match{Namespaces: strs(exactS("ns1")), DestinationPorts: []uint32{8080}, SourceIps: addrs("10.0.0.0/8")})),
			probes: []probe{
				allowed(at(web, 8080), "ns1/p"), notAllowed(at(web, 9090)), notAllowed(at(ns2web, 8080)),
				notAllowed(conn(web, "192.168.0.1", "10.7.0.10", 8080)),
			},
		},
		{
			name: "positive and not_ of one field together",
			policies: list(allowIf("p", &securitypb.Match{
				Principals:    strs(prefixS("cluster.local/ns/ns1/")),
				NotPrincipals: strs(exactS("cluster.local/ns/ns1/sa/blocked")),
			})),
			probes: []probe{allowed(at(web, 8080), "ns1/p"), notAllowed(at(blocked, 8080)), notAllowed(at(deploy, 8080))},
		},
		{
			name: "OR across matches of a rule",
			policies: list(policy("ns1", "p", securitypb.Action_ALLOW, group(rule(
				&securitypb.Match{Namespaces: strs(exactS("ns2"))},
				&securitypb.Match{DestinationPorts: []uint32{8080}},
			)))),
			probes: []probe{allowed(at(web, 8080), "ns1/p"), allowed(at(ns2web, 9090), "ns1/p"), notAllowed(at(web, 9090))},
		},
		{
			name: "AND across rules of a group",
			policies: list(policy("ns1", "p", securitypb.Action_ALLOW, group(
				rule(&securitypb.Match{DestinationPorts: []uint32{8080}}),
				rule(&securitypb.Match{Namespaces: strs(exactS("ns1"))}),
			))),
			probes: []probe{allowed(at(web, 8080), "ns1/p"), notAllowed(at(web, 9090)), notAllowed(at(ns2web, 8080))},
		},
		{
			name: "OR across groups",
			policies: list(policy("ns1", "p", securitypb.Action_ALLOW,
				group(rule(&securitypb.Match{Namespaces: strs(exactS("ns2"))})),
				group(rule(&securitypb.Match{DestinationPorts: []uint32{8080}})),
			)),
			probes: []probe{allowed(at(web, 8080), "ns1/p"), allowed(at(ns2web, 9090), "ns1/p"), notAllowed(at(web, 9090))},
		},
		{
			name: "DENY overrides ALLOW, in either order",
			policies: list(
				denyIf("deny-ns2", &securitypb.Match{Namespaces: strs(exactS("ns2"))}),
				allowIf("allow-mesh", &securitypb.Match{Principals: strs(prefixS("cluster.local/"))}),
				denyIf("deny-9090", &securitypb.Match{DestinationPorts: []uint32{9090}}),
			),
			probes: []probe{
				allowed(at(web, 8080), "ns1/allow-mesh"), deniedBy(at(ns2web, 8080), "ns1/deny-ns2"),
				deniedBy(at(web, 9090), "ns1/deny-9090"), notAllowed(plain(8080)),
			},
		},
		{
			name:     "DENY alone: what it does not match is allowed",
			policies: list(denyIf("d", &securitypb.Match{Namespaces: strs(exactS("ns2"))})),
			probes:   []probe{allowedNoPolicy(at(web, 8080)), deniedBy(at(ns2web, 8080), "ns1/d"), allowedNoPolicy(plain(8080))},
		},
		{
			name: "several ALLOWs: any one allows",
			policies: list(
				allowIf("a1", &securitypb.Match{DestinationPorts: []uint32{9090}}),
				allowIf("a2", &securitypb.Match{Namespaces: strs(exactS("ns1"))}),
			),
			probes: []probe{allowed(at(web, 8080), "ns1/a2"), allowed(at(ns2web, 9090), "ns1/a1"), notAllowed(at(ns2web, 8080))},
		},
		{
			name:     "ALLOW without groups allows nothing",
			policies: list(policy("ns2", "allow-nothing", securitypb.Action_ALLOW)),
			probes:   []probe{notAllowed(at(web, 8080)), notAllowed(plain(8080))},
		},
		{
			name:     "DENY without groups denies nothing",
			policies: list(policy("ns2", "deny-nothing", securitypb.Action_DENY)),
			probes:   []probe{allowedNoPolicy(at(web, 8080)), allowedNoPolicy(plain(8080))},
		},
		{
			name:     "group without rules matches everything (allow-all)",
			policies: list(policy("ns2", "allow-all", securitypb.Action_ALLOW, group())),
			probes:   []probe{allowed(at(web, 8080), "ns2/allow-all"), allowed(plain(1), "ns2/allow-all")},
		},
		{
			name:     "rule without matches matches nothing",
			policies: list(policy("ns1", "p", securitypb.Action_ALLOW, group(rule()))),
			probes:   []probe{notAllowed(at(web, 8080))},
		},
		{
			name:     "empty match in ALLOW matches everything",
			policies: list(allowIf("p", &securitypb.Match{})),
			probes:   []probe{allowed(at(web, 8080), "ns1/p"), allowed(plain(22), "ns1/p")},
		},
		{
			name: "empty match in DENY denies everything (DENY rule left with L7 parts only)",
			policies: list(policy("ns1", "deny-l7", securitypb.Action_DENY,
				group(rule(&securitypb.Match{DestinationPorts: []uint32{8080}}), rule(&securitypb.Match{Namespaces: strs(exactS("ns2"))})),
				group(rule(&securitypb.Match{})),
			)),
			probes: []probe{deniedBy(at(web, 9090), "ns1/deny-l7"), deniedBy(plain(8080), "ns1/deny-l7")},
		},
		{
			name:     "PeerAuthentication STRICT: plaintext denied, mTLS allowed",
			policies: list(policy("istio-system", "istio_converted_static_strict", securitypb.Action_DENY, group(rule(&securitypb.Match{NotPrincipals: strs(presenceS())})))),
			probes:   []probe{deniedBy(plain(8080), "istio-system/istio_converted_static_strict"), allowedNoPolicy(at(web, 8080))},
		},
		{
			name: "PeerAuthentication STRICT with a PERMISSIVE port",
			policies: list(policy("disable-ns", "converted_peer_authentication_strict-db", securitypb.Action_DENY,
				group(rule(&securitypb.Match{NotPrincipals: strs(presenceS()), NotDestinationPorts: []uint32{5432}})))),
			probes: []probe{allowedNoPolicy(plain(5432)), deniedBy(plain(8080), "disable-ns/converted_peer_authentication_strict-db"), allowedNoPolicy(at(web, 8080))},
		},
		{
			name: "plaintext source against identity fields",
			policies: list(policy("ns1", "p", securitypb.Action_ALLOW,
				group(rule(&securitypb.Match{Namespaces: strs(prefixS(""))})),
				group(rule(&securitypb.Match{ServiceAccounts: []*securitypb.ServiceAccountMatch{sa("", "")}})),
				group(rule(&securitypb.Match{Principals: strs(prefixS(""))})),
			)),
			probes: []probe{notAllowed(plain(8080)), allowed(at(web, 8080), "ns1/p")},
		},
		{
			name:     "dry-run DENY is not enforced",
			policies: list(dryRun(denyIf("d", &securitypb.Match{Namespaces: strs(exactS("ns1"))}))),
			probes:   []probe{allowedNoPolicy(at(web, 8080))},
		},
		{
			name: "dry-run policy after a matching DENY is still reported",
			policies: list(
				denyIf("d", &securitypb.Match{DestinationPorts: []uint32{9090}}),
				dryRun(allowIf("dry", &securitypb.Match{Namespaces: strs(exactS("ns2"))})),
			),
			probes: []probe{deniedBy(at(web, 9090), "ns1/d"), allowedNoPolicy(at(web, 8080))},
		},
		{
			name: "dry-run ALLOW is not enforced",
			policies: list(
				dryRun(allowIf("dry", &securitypb.Match{Namespaces: strs(exactS("ns2"))})),
				allowIf("real", &securitypb.Match{Namespaces: strs(exactS("ns1"))}),
			),
			probes: []probe{allowed(at(web, 8080), "ns1/real"), notAllowed(at(ns2web, 8080))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := mustCompileAll(t, tt.policies...)
			for _, pr := range tt.probes {
				got := Evaluate(ps, pr.conn)
				if got.Allow != pr.allow || got.Policy != pr.policy || got.Reason != pr.reason {
					t.Errorf("%s: got %v, want allow=%v policy=%q reason=%q", describe(pr.conn), got, pr.allow, pr.policy, pr.reason)
				}
				if hasDryRun(tt.policies) != (got.DryRun != nil) {
					t.Errorf("%s: DryRun = %v, want it set only with dry-run policies", describe(pr.conn), got.DryRun)
				}
			}
		})
	}
}

func list(as ...*securitypb.Authorization) []*securitypb.Authorization { return as }

func hasDryRun(as []*securitypb.Authorization) bool {
	for _, a := range as {
		if a.GetDryRun() {
			return true
		}
	}
	return false
}

func describe(c Conn) string {
	id := "plaintext"
	if !c.SrcIdentity.IsZero() {
		id = c.SrcIdentity.String()
	}
	return fmt.Sprintf("%s %s -> %s", id, c.SrcIP, netip.AddrPortFrom(c.DstIP, c.DstPort))
}

// TestDryRunReport checks what Evaluate reports about dry-run policies:
// the decision they would have made, next to the enforced one.
func TestDryRunReport(t *testing.T) {
	denyAll := policy("ns1", "would-deny", securitypb.Action_DENY, group(rule(&securitypb.Match{})))
	denyAll.DryRun = true
	allowNS2 := allowIf("would-allow-ns2", &securitypb.Match{Namespaces: strs(exactS("ns2"))})
	allowNS2.DryRun = true
	c := conn(web, "10.1.2.3", "10.7.0.10", 8080)

	got := Evaluate(mustCompileAll(t, denyAll), c)
	if !got.Allow || got.DryRun == nil || got.DryRun.Allow || got.DryRun.Policy != "ns1/would-deny" || got.DryRun.Reason != DenyMatched {
		t.Errorf("dry-run DENY: got %v (dry run %v), want enforced allow and dry-run deny by ns1/would-deny", got, got.DryRun)
	}
	got = Evaluate(mustCompileAll(t, allowNS2), c)
	if !got.Allow || got.DryRun == nil || got.DryRun.Allow || got.DryRun.Reason != NoAllowMatched {
		t.Errorf("dry-run ALLOW: got %v (dry run %v), want enforced allow and dry-run no ALLOW matched", got, got.DryRun)
	}
	if got.DryRun.DryRun != nil {
		t.Errorf("the dry-run decision nests another: %v", got.DryRun.DryRun)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name  string
		auth  *securitypb.Authorization
		field string // every error must name it
	}{
		{"unknown action", &securitypb.Authorization{Name: "p", Namespace: "ns1", Action: 7}, "action"},
		{"unknown scope", &securitypb.Authorization{Name: "p", Namespace: "ns1", Scope: 9}, "scope"},
		{"string match without type", allowIf("p", &securitypb.Match{Principals: strs(exactS("a"), &securitypb.StringMatch{})}), "groups[0].rules[0].matches[0].principals[1]"},
		{"namespace without type", allowIf("p", &securitypb.Match{NotNamespaces: strs(&securitypb.StringMatch{})}), "groups[0].rules[0].matches[0].not_namespaces[0]"},
		{"address of 5 bytes", allowIf("p", &securitypb.Match{SourceIps: []*securitypb.Address{{Address: []byte{1, 2, 3, 4, 5}, Length: 8}}}), "groups[0].rules[0].matches[0].source_ips[0]"},
		{"empty address", denyIf("p", &securitypb.Match{NotSourceIps: []*securitypb.Address{{}}}), "groups[0].rules[0].matches[0].not_source_ips[0]"},
		{"IPv4 prefix too long", allowIf("p", &securitypb.Match{DestinationIps: []*securitypb.Address{{Address: []byte{10, 0, 0, 0}, Length: 33}}}), "groups[0].rules[0].matches[0].destination_ips[0]"},
		{"IPv6 prefix too long", allowIf("p", &securitypb.Match{NotDestinationIps: []*securitypb.Address{{Address: make([]byte, 16), Length: 129}}}), "groups[0].rules[0].matches[0].not_destination_ips[0]"},
		{"port above 65535", allowIf("p", &securitypb.Match{DestinationPorts: []uint32{80, 65536}}), "groups[0].rules[0].matches[0].destination_ports[1]"},
		{"not port above 65535", allowIf("p", &securitypb.Match{NotDestinationPorts: []uint32{1 << 20}}), "groups[0].rules[0].matches[0].not_destination_ports[0]"},
		{
			"deep path",
			policy("ns1", "p", securitypb.Action_ALLOW, group(), group(rule(&securitypb.Match{}), rule(&securitypb.Match{}, &securitypb.Match{DestinationPorts: []uint32{70000}}))),
			"groups[1].rules[1].matches[1].destination_ports[0]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.auth)
			if err == nil {
				t.Fatalf("Compile accepted it: %+v", p)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if fe.Field != tt.field || fe.Policy != tt.auth.GetNamespace()+"/"+tt.auth.GetName() {
				t.Errorf("FieldError names %s in %s, want %s in %s/%s", fe.Field, fe.Policy, tt.field, tt.auth.GetNamespace(), tt.auth.GetName())
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
		})
	}
}

func TestCompileReportsEveryFieldUpToALimit(t *testing.T) {
	m := &securitypb.Match{}
	for range 20 {
		m.DestinationPorts = append(m.DestinationPorts, 1<<17)
	}
	_, err := Compile(allowIf("p", m))
	if err == nil {
		t.Fatal("accepted 20 bad ports")
	}
	msg := err.Error()
	if n := strings.Count(msg, "is above 65535"); n != maxFieldErrors {
		t.Errorf("reported %d bad ports, want %d: %s", n, maxFieldErrors, msg)
	}
	if !strings.Contains(msg, "12 more invalid fields") {
		t.Errorf("error does not count the rest: %s", msg)
	}
	if _, err := Compile(nil); err == nil {
		t.Error("Compile(nil) succeeded")
	}
}

func TestPolicyAccessors(t *testing.T) {
	a := policy("ns1", "p", securitypb.Action_DENY)
	a.Scope, a.DryRun = securitypb.Scope_NAMESPACE, true
	p := mustCompileAll(t, a)[0]
	if p.Key() != "ns1/p" || p.Name() != "p" || p.Namespace() != "ns1" || p.Scope() != Namespace || p.Action() != Deny || !p.DryRun() {
		t.Errorf("accessors: key %s name %s ns %s scope %s action %s dry-run %v", p.Key(), p.Name(), p.Namespace(), p.Scope(), p.Action(), p.DryRun())
	}
}

func TestAppliesTo(t *testing.T) {
	mk := func(ns string, scope securitypb.Scope) *Policy {
		a := policy(ns, "p", securitypb.Action_ALLOW)
		a.Scope = scope
		return mustCompileAll(t, a)[0]
	}
	global := mk("istio-system", securitypb.Scope_GLOBAL)
	namespace := mk("ns1", securitypb.Scope_NAMESPACE)
	selector := mk("ns1", securitypb.Scope_WORKLOAD_SELECTOR)
	rootSelector := mk("istio-system", securitypb.Scope_WORKLOAD_SELECTOR)
	tests := []struct {
		p      *Policy
		ns     string
		listed []string
		want   bool
	}{
		{global, "ns1", nil, true},
		{global, "ns2", nil, true},
		{namespace, "ns1", nil, true},
		{namespace, "ns2", nil, false},
		{selector, "ns1", nil, false},
		{selector, "ns1", []string{"ns1/other", "ns1/p"}, true},
		{selector, "ns2", []string{"ns1/p"}, true}, // xds decides who lists it
		{rootSelector, "ns1", []string{"istio-system/p"}, true},
		{rootSelector, "ns1", []string{"ns1/p"}, false},
	}
	for _, tt := range tests {
		if got := tt.p.AppliesTo(tt.ns, tt.listed); got != tt.want {
			t.Errorf("%s (%s).AppliesTo(%s, %v) = %v, want %v", tt.p.Key(), tt.p.Scope(), tt.ns, tt.listed, got, tt.want)
		}
	}
}

func TestMatchesIgnoresActionAndDryRun(t *testing.T) {
	a := denyIf("d", &securitypb.Match{DestinationPorts: []uint32{8080}})
	a.DryRun = true
	p := mustCompileAll(t, a)[0]
	if !p.Matches(conn("", "10.1.2.3", "10.7.0.10", 8080)) || p.Matches(conn("", "10.1.2.3", "10.7.0.10", 80)) {
		t.Error("Matches does not follow the match")
	}
}

func TestDecisionString(t *testing.T) {
	tests := []struct {
		d    Decision
		want string
	}{
		{Decision{Allow: true, Reason: NoAllowPolicy}, "allow: no ALLOW policy applies"},
		{Decision{Allow: true, Policy: "ns1/a", Reason: AllowMatched}, "allow: allowed by policy ns1/a"},
		{Decision{Policy: "ns1/d", Reason: DenyMatched}, "deny: denied by policy ns1/d"},
		{Decision{Reason: NoAllowMatched}, "deny: ALLOW policies apply but none matched"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	if Allow.String() != "ALLOW" || Deny.String() != "DENY" || Global.String() != "GLOBAL" || WorkloadSelector.String() != "WORKLOAD_SELECTOR" {
		t.Error("enum names differ from the proto's")
	}
}

// benchPolicies is a realistic set for one destination: mesh-wide STRICT,
// a namespace DENY and the "sources" and "operations" ALLOW policies of the
// xds golden authz-fields, so the allowing match is among the last tried.
func benchPolicies(tb testing.TB) []*Policy {
	return mustCompileAll(tb,
		policy("istio-system", "istio_converted_static_strict", securitypb.Action_DENY, group(rule(&securitypb.Match{NotPrincipals: strs(presenceS())}))),
		policy("istio-system", "deny-blocked-ns", securitypb.Action_DENY, group(rule(&securitypb.Match{Namespaces: strs(exactS("blocked"))}))),
		policy("ns1", "operations", securitypb.Action_ALLOW, group(
			rule(&securitypb.Match{DestinationPorts: []uint32{9090}}),
			rule(&securitypb.Match{SourceIps: addrs("10.1.0.0/16"), NotSourceIps: addrs("10.1.2.3")}),
		)),
		policy("ns1", "sources", securitypb.Action_ALLOW, group(rule(
			&securitypb.Match{Principals: strs(exactS("cluster.local/ns/ns1/sa/admin"), prefixS("cluster.local/ns/ops/"), suffixS("/sa/root")), NotPrincipals: strs(exactS("cluster.local/ns/ns1/sa/blocked"))},
			&securitypb.Match{Namespaces: strs(exactS("ns3"), prefixS("team-")), NotNamespaces: strs(exactS("ns1-sandbox"))},
			&securitypb.Match{ServiceAccounts: []*securitypb.ServiceAccountMatch{sa("ns1", "db"), sa("ops", "deployer")}},
			&securitypb.Match{SourceIps: addrs("192.168.0.0/16", "2001:db8::/32", "10.0.0.0/8"), NotSourceIps: addrs("10.9.0.0/16")},
		))),
	)
}

func TestEvaluateDoesNotAllocate(t *testing.T) {
	ps := benchPolicies(t)
	c := conn(web, "10.1.2.3", "10.7.0.10", 8080)
	if d := Evaluate(ps, c); !d.Allow || d.Policy != "ns1/sources" {
		t.Fatalf("bench connection: %v, want allowed by ns1/sources", d)
	}
	if n := testing.AllocsPerRun(100, func() { Evaluate(ps, c) }); n != 0 {
		t.Errorf("Evaluate allocates %v times per call", n)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	ps := benchPolicies(b)
	cases := []struct {
		name string
		c    Conn
	}{
		{"allow-last-match", conn(web, "10.1.2.3", "10.7.0.10", 8080)},
		{"deny-strict-plaintext", conn("", "10.1.2.3", "10.7.0.10", 8080)},
		{"deny-no-allow-matched", conn(web, "172.16.0.1", "10.7.0.10", 8080)},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Evaluate(ps, bc.c)
			}
		})
	}
	b.Run("no-policies", func(b *testing.B) {
		c := cases[0].c
		b.ReportAllocs()
		for b.Loop() {
			Evaluate(nil, c)
		}
	})
}

func BenchmarkCompile(b *testing.B) {
	a := policy("ns1", "sources", securitypb.Action_ALLOW, group(rule(
		&securitypb.Match{Principals: strs(exactS("cluster.local/ns/ns1/sa/admin"), prefixS("cluster.local/ns/ops/")), NotPrincipals: strs(exactS("cluster.local/ns/ns1/sa/blocked"))},
		&securitypb.Match{SourceIps: addrs("192.168.0.0/16", "2001:db8::/32", "10.0.0.0/8"), NotSourceIps: addrs("10.9.0.0/16")},
	)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(a); err != nil {
			b.Fatal(err)
		}
	}
}
