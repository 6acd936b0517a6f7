package authz

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	securitypb "github.com/ambitmesh/ambit/proto/istio/security"
)

// Action is what a matching policy does.
type Action uint8

// Actions, as istio.security.Action.
const (
	Allow Action = iota
	Deny
)

func (a Action) String() string {
	if a == Deny {
		return "DENY"
	}
	return "ALLOW"
}

// Scope is which workloads a policy applies to, as istio.security.Scope.
type Scope uint8

// Scopes.
const (
	// Global policies apply to every workload (policies of the root
	// namespace).
	Global Scope = iota
	// Namespace policies apply to the workloads of the policy's namespace.
	Namespace
	// WorkloadSelector policies apply to the workloads that list them.
	WorkloadSelector
)

func (s Scope) String() string {
	switch s {
	case Namespace:
		return "NAMESPACE"
	case WorkloadSelector:
		return "WORKLOAD_SELECTOR"
	}
	return "GLOBAL"
}

// Policy is a compiled Authorization: immutable, safe for concurrent use.
type Policy struct {
	key       string // "<namespace>/<name>", the xDS resource name
	name      string
	namespace string
	scope     Scope
	action    Action
	dryRun    bool
	groups    []allOf // OR'ed; none matches nothing
}

// allOf is a group: a conjunction of rules; one without rules matches.
type allOf []anyOf

// anyOf is a rule: a disjunction of matches; one without matches never
// matches.
type anyOf []match

// match is a conjunction over the fields set. Lists are nil when unset.
type match struct {
	ports, notPorts                   []uint16
	dstIPs, notDstIPs                 []netip.Prefix
	srcIPs, notSrcIPs                 []netip.Prefix
	principals, notPrincipals         []stringMatch
	namespaces, notNamespaces         []stringMatch
	serviceAccounts, notServiceAccnts []serviceAccount
}

type matchKind uint8

const (
	exact matchKind = iota
	prefix
	suffix
	presence
)

type stringMatch struct {
	kind  matchKind
	value string
}

type serviceAccount struct {
	namespace, name string
}

// Key is the policy's xDS name, "<namespace>/<name>", as workloads list it.
func (p *Policy) Key() string { return p.key }

// Name is the AuthorizationPolicy's name.
func (p *Policy) Name() string { return p.name }

// Namespace is the AuthorizationPolicy's namespace.
func (p *Policy) Namespace() string { return p.namespace }

// Scope is which workloads the policy applies to.
func (p *Policy) Scope() Scope { return p.scope }

// Action is what the policy does when it matches.
func (p *Policy) Action() Action { return p.action }

// DryRun reports whether the policy is only evaluated, never enforced.
func (p *Policy) DryRun() bool { return p.dryRun }

// AppliesTo reports whether the policy governs a workload in namespace
// whose Workload resource lists listed (its authorization_policies), as
// Istio's ztunnel selects them: GLOBAL policies apply everywhere,
// NAMESPACE policies in their namespace, WORKLOAD_SELECTOR policies where
// listed.
func (p *Policy) AppliesTo(namespace string, listed []string) bool {
	switch p.scope {
	case Global:
		return true
	case Namespace:
		return p.namespace == namespace
	}
	return slices.Contains(listed, p.key)
}

// FieldError says which field of an Authorization cannot be enforced, as a
// path in the proto's field names, so an xDS NACK can point at it.
type FieldError struct {
	Policy string // "<namespace>/<name>"
	Field  string // e.g. "groups[0].rules[1].matches[0].source_ips[2]"
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("authorization %s: %s: %s", e.Policy, e.Field, e.Reason)
}

// maxFieldErrors bounds how many problems one Compile reports; a resource
// broken everywhere needs no thousand-line NACK.
const maxFieldErrors = 8

// compiler collects field errors while converting.
type compiler struct {
	key     string
	errs    []error
	dropped int
}

func (c *compiler) fail(reason string, path func() string) {
	if len(c.errs) >= maxFieldErrors {
		c.dropped++
		return
	}
	c.errs = append(c.errs, &FieldError{Policy: c.key, Field: path(), Reason: reason})
}

func (c *compiler) err() error {
	if c.dropped > 0 {
		c.errs = append(c.errs, fmt.Errorf("authorization %s: %d more invalid fields", c.key, c.dropped))
	}
	return errors.Join(c.errs...)
}

// Compile validates a and converts it to the form Evaluate uses. The error
// joins one *FieldError per field that cannot be enforced exactly (an
// unknown action or scope, a StringMatch without a type, an address that
// is not 4 or 16 bytes or whose prefix length exceeds them, a port above
// 65535); a policy with any of them is refused whole, so the previous
// version stays in force.
func Compile(a *securitypb.Authorization) (*Policy, error) {
	if a == nil {
		return nil, errors.New("authorization: nil resource")
	}
	p := &Policy{
		key:       a.GetNamespace() + "/" + a.GetName(),
		name:      a.GetName(),
		namespace: a.GetNamespace(),
		dryRun:    a.GetDryRun(),
	}
	c := &compiler{key: p.key}
	switch a.GetAction() {
	case securitypb.Action_ALLOW:
		p.action = Allow
	case securitypb.Action_DENY:
		p.action = Deny
	default:
		c.fail(fmt.Sprintf("unknown action %d", a.GetAction()), func() string { return "action" })
	}
	switch a.GetScope() {
	case securitypb.Scope_GLOBAL:
		p.scope = Global
	case securitypb.Scope_NAMESPACE:
		p.scope = Namespace
	case securitypb.Scope_WORKLOAD_SELECTOR:
		p.scope = WorkloadSelector
	default:
		c.fail(fmt.Sprintf("unknown scope %d", a.GetScope()), func() string { return "scope" })
	}
	if n := len(a.GetGroups()); n > 0 {
		p.groups = make([]allOf, n)
	}
	for gi, g := range a.GetGroups() {
		rs := g.GetRules()
		if len(rs) > 0 {
			p.groups[gi] = make(allOf, len(rs))
		}
		for ri, r := range rs {
			ms := r.GetMatches()
			if len(ms) > 0 {
				p.groups[gi][ri] = make(anyOf, len(ms))
			}
			for mi, m := range ms {
				at := func(field string, i int) func() string {
					return func() string {
						return fmt.Sprintf("groups[%d].rules[%d].matches[%d].%s[%d]", gi, ri, mi, field, i)
					}
				}
				p.groups[gi][ri][mi] = c.match(m, at)
			}
		}
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return p, nil
}

func (c *compiler) match(m *securitypb.Match, at func(string, int) func() string) match {
	return match{
		ports:            c.ports(m.GetDestinationPorts(), "destination_ports", at),
		notPorts:         c.ports(m.GetNotDestinationPorts(), "not_destination_ports", at),
		dstIPs:           c.prefixes(m.GetDestinationIps(), "destination_ips", at),
		notDstIPs:        c.prefixes(m.GetNotDestinationIps(), "not_destination_ips", at),
		srcIPs:           c.prefixes(m.GetSourceIps(), "source_ips", at),
		notSrcIPs:        c.prefixes(m.GetNotSourceIps(), "not_source_ips", at),
		principals:       c.strings(m.GetPrincipals(), "principals", at),
		notPrincipals:    c.strings(m.GetNotPrincipals(), "not_principals", at),
		namespaces:       c.strings(m.GetNamespaces(), "namespaces", at),
		notNamespaces:    c.strings(m.GetNotNamespaces(), "not_namespaces", at),
		serviceAccounts:  serviceAccounts(m.GetServiceAccounts()),
		notServiceAccnts: serviceAccounts(m.GetNotServiceAccounts()),
	}
}

func (c *compiler) ports(in []uint32, field string, at func(string, int) func() string) []uint16 {
	if len(in) == 0 {
		return nil
	}
	out := make([]uint16, len(in))
	for i, p := range in {
		if p > 65535 {
			c.fail(fmt.Sprintf("port %d is above 65535", p), at(field, i))
			continue
		}
		out[i] = uint16(p)
	}
	return out
}

func (c *compiler) prefixes(in []*securitypb.Address, field string, at func(string, int) func() string) []netip.Prefix {
	if len(in) == 0 {
		return nil
	}
	out := make([]netip.Prefix, len(in))
	for i, a := range in {
		p, err := prefixOf(a)
		if err != nil {
			c.fail(err.Error(), at(field, i))
			continue
		}
		out[i] = p
	}
	return out
}

// prefixOf converts an Address to a masked prefix. An IPv4-mapped IPv6
// prefix of at least 96 bits becomes the IPv4 prefix it denotes, because
// Evaluate compares unmapped addresses.
func prefixOf(a *securitypb.Address) (netip.Prefix, error) {
	addr, ok := netip.AddrFromSlice(a.GetAddress())
	if !ok {
		return netip.Prefix{}, fmt.Errorf("address has %d bytes, want 4 or 16", len(a.GetAddress()))
	}
	bits := a.GetLength()
	if bits > uint32(addr.BitLen()) {
		return netip.Prefix{}, fmt.Errorf("prefix length %d exceeds the %d bits of %s", bits, addr.BitLen(), addr)
	}
	if addr.Is4In6() && bits >= 96 {
		addr, bits = addr.Unmap(), bits-96
	}
	// Host bits are ignored, as Istio does with "10.1.2.3/16".
	return netip.PrefixFrom(addr, int(bits)).Masked(), nil
}

func (c *compiler) strings(in []*securitypb.StringMatch, field string, at func(string, int) func() string) []stringMatch {
	if len(in) == 0 {
		return nil
	}
	out := make([]stringMatch, len(in))
	for i, s := range in {
		switch t := s.GetMatchType().(type) {
		case *securitypb.StringMatch_Exact:
			out[i] = stringMatch{exact, t.Exact}
		case *securitypb.StringMatch_Prefix:
			out[i] = stringMatch{prefix, t.Prefix}
		case *securitypb.StringMatch_Suffix:
			out[i] = stringMatch{suffix, t.Suffix}
		case *securitypb.StringMatch_Presence:
			out[i] = stringMatch{kind: presence}
		default:
			c.fail("no match type (exact, prefix, suffix or presence)", at(field, i))
		}
	}
	return out
}

func serviceAccounts(in []*securitypb.ServiceAccountMatch) []serviceAccount {
	if len(in) == 0 {
		return nil
	}
	out := make([]serviceAccount, len(in))
	for i, s := range in {
		out[i] = serviceAccount{namespace: s.GetNamespace(), name: s.GetServiceAccount()}
	}
	return out
}
