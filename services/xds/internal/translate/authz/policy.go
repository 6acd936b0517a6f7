package authz

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/emptypb"
	securityv1beta1 "istio.io/api/security/v1beta1"

	security "github.com/ambitmesh/ambit/proto/istio/security"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/model"
)

// Enforced reports whether ztunnel enforces p; when not, reason says why.
func Enforced(p *model.AuthorizationPolicy) (ok bool, reason string) {
	spec := p.Spec
	switch {
	case spec.GetTargetRef() != nil || len(spec.GetTargetRefs()) > 0:
		return false, "targetRefs: enforced by waypoints"
	case p.DryRun:
		return false, "dry-run"
	}
	switch spec.GetAction() {
	case securityv1beta1.AuthorizationPolicy_ALLOW, securityv1beta1.AuthorizationPolicy_DENY:
		return true, ""
	}
	return false, "action " + spec.GetAction().String() + " is not enforced by ztunnel"
}

// Convert builds the Authorization of an enforced policy and lists the L7
// attributes it dropped (sorted, unique). It returns nil for a policy
// ztunnel does not enforce.
func Convert(p *model.AuthorizationPolicy, rootNamespace string) (*security.Authorization, []string) {
	if ok, _ := Enforced(p); !ok {
		return nil, nil
	}
	ns := p.Namespace.String()
	out := &security.Authorization{
		Name:      p.Name,
		Namespace: ns,
		Scope:     security.Scope_WORKLOAD_SELECTOR,
		Action:    security.Action_ALLOW,
	}
	if p.Selector == nil {
		out.Scope = security.Scope_NAMESPACE
		if ns == rootNamespace {
			out.Scope = security.Scope_GLOBAL
		}
	}
	if p.Spec.GetAction() == securityv1beta1.AuthorizationPolicy_DENY {
		out.Action = security.Action_DENY
	}
	var dropped []string
	for _, r := range p.Spec.GetRules() {
		g, l7 := convertRule(r, ns)
		dropped = append(dropped, l7...)
		if len(l7) > 0 && out.Action == security.Action_ALLOW {
			// It could only ever allow less than asked: leave it out.
			continue
		}
		out.Groups = append(out.Groups, g)
	}
	slices.Sort(dropped)
	return out, slices.Compact(dropped)
}

// convertRule turns one rule into a group (to, from, when: AND-ed) and
// names the L7 attributes it found.
func convertRule(r *securityv1beta1.Rule, ns string) (*security.Group, []string) {
	g := &security.Group{}
	var l7 []string
	if len(r.GetTo()) > 0 {
		rs := &security.Rules{}
		for _, to := range r.GetTo() {
			op := to.GetOperation()
			l7 = appendIf(l7, "hosts", len(op.GetHosts()) > 0)
			l7 = appendIf(l7, "notHosts", len(op.GetNotHosts()) > 0)
			l7 = appendIf(l7, "methods", len(op.GetMethods()) > 0)
			l7 = appendIf(l7, "notMethods", len(op.GetNotMethods()) > 0)
			l7 = appendIf(l7, "paths", len(op.GetPaths()) > 0)
			l7 = appendIf(l7, "notPaths", len(op.GetNotPaths()) > 0)
			rs.Matches = append(rs.Matches, &security.Match{
				DestinationPorts:    ports(op.GetPorts()),
				NotDestinationPorts: ports(op.GetNotPorts()),
			})
		}
		g.Rules = append(g.Rules, rs)
	}
	if len(r.GetFrom()) > 0 {
		rs := &security.Rules{}
		for _, from := range r.GetFrom() {
			src := from.GetSource()
			l7 = appendIf(l7, "requestPrincipals", len(src.GetRequestPrincipals()) > 0)
			l7 = appendIf(l7, "notRequestPrincipals", len(src.GetNotRequestPrincipals()) > 0)
			l7 = appendIf(l7, "remoteIpBlocks", len(src.GetRemoteIpBlocks()) > 0)
			l7 = appendIf(l7, "notRemoteIpBlocks", len(src.GetNotRemoteIpBlocks()) > 0)
			rs.Matches = append(rs.Matches, &security.Match{
				Principals:         stringMatches(src.GetPrincipals()),
				NotPrincipals:      stringMatches(src.GetNotPrincipals()),
				Namespaces:         stringMatches(src.GetNamespaces()),
				NotNamespaces:      stringMatches(src.GetNotNamespaces()),
				ServiceAccounts:    serviceAccounts(src.GetServiceAccounts(), ns),
				NotServiceAccounts: serviceAccounts(src.GetNotServiceAccounts(), ns),
				SourceIps:          addresses(src.GetIpBlocks()),
				NotSourceIps:       addresses(src.GetNotIpBlocks()),
			})
		}
		g.Rules = append(g.Rules, rs)
	}
	for _, c := range r.GetWhen() {
		m, ok := whenMatch(c)
		if !ok {
			l7 = append(l7, c.GetKey())
		}
		g.Rules = append(g.Rules, &security.Rules{Matches: []*security.Match{m}})
	}
	return g, l7
}

// whenMatch converts an L4 condition; for any other key it returns an
// empty match (which matches everything) and false.
func whenMatch(c *securityv1beta1.Condition) (*security.Match, bool) {
	v, nv := c.GetValues(), c.GetNotValues()
	m := &security.Match{}
	switch c.GetKey() {
	case "source.ip":
		m.SourceIps, m.NotSourceIps = addresses(v), addresses(nv)
	case "source.namespace":
		m.Namespaces, m.NotNamespaces = stringMatches(v), stringMatches(nv)
	case "source.principal":
		m.Principals, m.NotPrincipals = stringMatches(v), stringMatches(nv)
	case "destination.ip":
		m.DestinationIps, m.NotDestinationIps = addresses(v), addresses(nv)
	case "destination.port":
		m.DestinationPorts, m.NotDestinationPorts = ports(v), ports(nv)
	default:
		return m, false
	}
	return m, true
}

func appendIf(l []string, s string, cond bool) []string {
	if cond {
		return append(l, s)
	}
	return l
}

// stringMatches converts Istio's string syntax: "*" any value, "*x" suffix,
// "x*" prefix, otherwise exact.
func stringMatches(vs []string) []*security.StringMatch {
	if len(vs) == 0 {
		return nil
	}
	out := make([]*security.StringMatch, 0, len(vs))
	for _, v := range vs {
		var m security.StringMatch
		switch {
		case v == "*":
			m.MatchType = &security.StringMatch_Presence{Presence: &emptypb.Empty{}}
		case strings.HasPrefix(v, "*"):
			m.MatchType = &security.StringMatch_Suffix{Suffix: v[1:]}
		case strings.HasSuffix(v, "*"):
			m.MatchType = &security.StringMatch_Prefix{Prefix: v[:len(v)-1]}
		default:
			m.MatchType = &security.StringMatch_Exact{Exact: v}
		}
		out = append(out, &m)
	}
	return out
}

// serviceAccounts: "ns/sa" names one in another namespace, "sa" one in the
// policy's namespace.
func serviceAccounts(vs []string, ns string) []*security.ServiceAccountMatch {
	if len(vs) == 0 {
		return nil
	}
	out := make([]*security.ServiceAccountMatch, 0, len(vs))
	for _, v := range vs {
		n, sa, ok := strings.Cut(v, "/")
		if !ok {
			n, sa = ns, v
		}
		out = append(out, &security.ServiceAccountMatch{Namespace: n, ServiceAccount: sa})
	}
	return out
}

// addresses parses IPs and CIDRs; invalid entries (rejected by config's
// validation) are skipped.
func addresses(vs []string) []*security.Address {
	if len(vs) == 0 {
		return nil
	}
	out := make([]*security.Address, 0, len(vs))
	for _, v := range vs {
		var p netip.Prefix
		if strings.Contains(v, "/") {
			var err error
			if p, err = netip.ParsePrefix(v); err != nil {
				continue
			}
		} else {
			a, err := netip.ParseAddr(v)
			if err != nil {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, &security.Address{Address: p.Addr().AsSlice(), Length: uint32(p.Bits())})
	}
	return out
}

// ports parses port numbers; invalid entries are skipped.
func ports(vs []string) []uint32 {
	if len(vs) == 0 {
		return nil
	}
	out := make([]uint32, 0, len(vs))
	for _, v := range vs {
		if p, err := strconv.ParseUint(v, 10, 16); err == nil {
			out = append(out, uint32(p))
		}
	}
	return out
}
