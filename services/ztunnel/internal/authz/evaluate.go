package authz

import (
	"net/netip"
	"strings"

	"github.com/ambitmesh/ambit/pkg/spiffe"
)

// Conn is what authorization knows of a connection to a local workload.
type Conn struct {
	// SrcIdentity is the source's verified SPIFFE identity; the zero
	// Identity for a plaintext source (inbound on 15006).
	SrcIdentity spiffe.Identity
	SrcIP       netip.Addr
	DstIP       netip.Addr
	DstPort     uint16
}

// Reason says why a Decision came out as it did.
type Reason uint8

// Reasons.
const (
	// NoAllowPolicy: nothing denied and no ALLOW policy applies.
	NoAllowPolicy Reason = iota
	// AllowMatched: nothing denied and an ALLOW policy matched.
	AllowMatched
	// DenyMatched: a DENY policy matched.
	DenyMatched
	// NoAllowMatched: ALLOW policies apply but none matched.
	NoAllowMatched
)

func (r Reason) String() string {
	switch r {
	case AllowMatched:
		return "allowed by policy"
	case DenyMatched:
		return "denied by policy"
	case NoAllowMatched:
		return "ALLOW policies apply but none matched"
	}
	return "no ALLOW policy applies"
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Allow bool
	// Policy is the key ("<namespace>/<name>") of the policy that decided:
	// the matching DENY or ALLOW; empty for NoAllowPolicy and
	// NoAllowMatched.
	Policy string
	Reason Reason
	// DryRun, set only when dry-run policies were among those evaluated,
	// is what would have been decided had they been enforced too, for
	// logging; it never changes Allow.
	DryRun *Decision
}

// String describes the decision for logs, e.g. "deny: denied by policy
// ns1/block".
func (d Decision) String() string {
	verdict := "deny"
	if d.Allow {
		verdict = "allow"
	}
	if d.Policy == "" {
		return verdict + ": " + d.Reason.String()
	}
	return verdict + ": " + d.Reason.String() + " " + d.Policy
}

// source is the identity of a Conn in the forms the matches compare, so
// each is derived once per evaluation. Only workload identities have a
// namespace and service account; a source without them (plaintext, or a
// non-workload identity, which the HBONE handshake refuses anyway) never
// matches a positive namespace or service-account match.
type source struct {
	present        bool
	principal      string // "<td>/ns/<ns>/sa/<sa>"
	namespace      string
	serviceAccount string
}

func sourceOf(id *spiffe.Identity) source {
	if id.IsZero() {
		return source{}
	}
	// Allocation-free: spiffeid.ID keeps its string form.
	return source{
		present:        true,
		principal:      strings.TrimPrefix(id.String(), "spiffe://"),
		namespace:      id.Namespace(),
		serviceAccount: id.ServiceAccount(),
	}
}

// Evaluate decides c against the policies that apply to its destination
// workload (see Policy.AppliesTo), in any order. It does not allocate
// unless dry-run policies are among them.
func Evaluate(policies []*Policy, c Conn) Decision {
	if len(policies) == 0 {
		return Decision{Allow: true, Reason: NoAllowPolicy}
	}
	c.SrcIP, c.DstIP = c.SrcIP.Unmap(), c.DstIP.Unmap()
	src := sourceOf(&c.SrcIdentity)
	d, dryRun := decide(policies, &c, &src, false)
	if !dryRun && d.Reason == DenyMatched {
		dryRun = anyDryRun(policies) // decide stopped at the DENY
	}
	if dryRun {
		shadow, _ := decide(policies, &c, &src, true)
		d.DryRun = &shadow
	}
	return d
}

func anyDryRun(policies []*Policy) bool {
	for _, p := range policies {
		if p.dryRun {
			return true
		}
	}
	return false
}

// decide applies the decision rules over the enforced policies, and over
// the dry-run ones too when withDryRun. It reports whether it skipped any
// dry-run policy.
func decide(policies []*Policy, c *Conn, src *source, withDryRun bool) (d Decision, skipped bool) {
	var (
		haveAllow bool
		allowedBy string
	)
	for _, p := range policies {
		if p.dryRun && !withDryRun {
			skipped = true
			continue
		}
		if p.action == Deny {
			if p.matches(c, src) {
				return Decision{Allow: false, Policy: p.key, Reason: DenyMatched}, skipped
			}
			continue
		}
		haveAllow = true
		if allowedBy == "" && p.matches(c, src) {
			allowedBy = p.key
		}
	}
	switch {
	case !haveAllow:
		return Decision{Allow: true, Reason: NoAllowPolicy}, skipped
	case allowedBy != "":
		return Decision{Allow: true, Policy: allowedBy, Reason: AllowMatched}, skipped
	}
	return Decision{Allow: false, Reason: NoAllowMatched}, skipped
}

// Matches reports whether the policy matches c, whatever its action and
// dry-run flag; for tools that explain decisions.
func (p *Policy) Matches(c Conn) bool {
	c.SrcIP, c.DstIP = c.SrcIP.Unmap(), c.DstIP.Unmap()
	src := sourceOf(&c.SrcIdentity)
	return p.matches(&c, &src)
}

func (p *Policy) matches(c *Conn, src *source) bool {
	for _, g := range p.groups {
		if g.matches(c, src) {
			return true
		}
	}
	return false
}

func (g allOf) matches(c *Conn, src *source) bool {
	for _, r := range g {
		if !r.matches(c, src) {
			return false
		}
	}
	return true
}

func (r anyOf) matches(c *Conn, src *source) bool {
	for i := range r {
		if r[i].matches(c, src) {
			return true
		}
	}
	return false
}

// matches checks the cheap numeric fields first. A nil list is unset: it
// matches, positive or not_.
func (m *match) matches(c *Conn, src *source) bool {
	return (m.ports == nil || containsPort(m.ports, c.DstPort)) &&
		!containsPort(m.notPorts, c.DstPort) &&
		(m.dstIPs == nil || containsIP(m.dstIPs, c.DstIP)) &&
		!containsIP(m.notDstIPs, c.DstIP) &&
		(m.srcIPs == nil || containsIP(m.srcIPs, c.SrcIP)) &&
		!containsIP(m.notSrcIPs, c.SrcIP) &&
		(m.principals == nil || matchesString(m.principals, src.present, src.principal)) &&
		!matchesString(m.notPrincipals, src.present, src.principal) &&
		(m.namespaces == nil || matchesString(m.namespaces, src.namespace != "", src.namespace)) &&
		!matchesString(m.notNamespaces, src.namespace != "", src.namespace) &&
		(m.serviceAccounts == nil || matchesServiceAccount(m.serviceAccounts, src)) &&
		!matchesServiceAccount(m.notServiceAccnts, src)
}

func containsPort(ports []uint16, port uint16) bool {
	for _, p := range ports {
		if p == port {
			return true
		}
	}
	return false
}

func containsIP(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// matchesString reports whether any of ms matches value; nothing matches
// an absent value (a source without identity).
func matchesString(ms []stringMatch, present bool, value string) bool {
	if !present {
		return false
	}
	for _, m := range ms {
		var ok bool
		switch m.kind {
		case exact:
			ok = value == m.value
		case prefix:
			ok = strings.HasPrefix(value, m.value)
		case suffix:
			ok = strings.HasSuffix(value, m.value)
		case presence:
			ok = value != ""
		}
		if ok {
			return true
		}
	}
	return false
}

func matchesServiceAccount(sas []serviceAccount, src *source) bool {
	if src.namespace == "" {
		return false
	}
	for _, sa := range sas {
		if sa.namespace == src.namespace && sa.name == src.serviceAccount {
			return true
		}
	}
	return false
}
