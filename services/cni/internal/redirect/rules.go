package redirect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ChainPrefix starts the name of every chain this package owns. Anything
// with this prefix in a pod netns is ours to rewrite or delete, including
// chains an older version left behind; nothing else is ever touched.
const ChainPrefix = "AMBIT_"

// Our chains, one pair per table we use. Names as Istio's ISTIO_PRERT and
// ISTIO_OUTPUT so operators recognise them.
const (
	chainPrerouting = ChainPrefix + "PRERT"
	chainOutput     = ChainPrefix + "OUTPUT"
)

// ruleSet is the wanted state of the pod netns: per table, our chains with
// their rules and the jumps into them from built-in chains.
type ruleSet struct {
	tables []table
}

type table struct {
	name   string
	chains []chain
	jumps  []rule // rules in built-in chains whose target is one of ours
}

type chain struct {
	name  string
	rules []string // rule specs, as iptables-save prints them after "-A <chain> "
}

// rule is one rule of a chain: "-A <chain> <spec>".
type rule struct {
	chain, spec string
}

// ruleParams are the validated values the rules are built from.
type ruleParams struct {
	outbound, inboundPlain, inboundHBONE uint16
	mark, connMark, mask                 uint32
	nodeAddrs                            []netip.Addr
}

// newRuleParams validates options and the pod's node addresses. Only IPv4
// addresses are kept: redirection is IPv4-only for now (see IPTables).
func newRuleParams(o IPTablesOptions, nodeAddrs []netip.Addr) (ruleParams, error) {
	o = o.withDefaults()
	ports := []uint16{o.OutboundPort, o.InboundPlaintextPort, o.InboundHBONEPort}
	if slices.Contains(ports, 0) {
		return ruleParams{}, fmt.Errorf("ports %v: must not be 0", ports)
	}
	if o.OutboundPort == o.InboundPlaintextPort || o.OutboundPort == o.InboundHBONEPort || o.InboundPlaintextPort == o.InboundHBONEPort {
		return ruleParams{}, fmt.Errorf("ports %v: must be distinct", ports)
	}
	for _, m := range []struct {
		what string
		v    uint32
	}{{"mark", o.Mark}, {"connmark", o.ConnMark}} {
		if m.v == 0 || m.v&^o.MarkMask != 0 {
			return ruleParams{}, fmt.Errorf("%s %#x: must be non-zero and within mask %#x", m.what, m.v, o.MarkMask)
		}
	}
	if o.Mark == o.ConnMark {
		return ruleParams{}, fmt.Errorf("mark and connmark are both %#x: they must differ", o.Mark)
	}
	var addrs []netip.Addr
	for _, a := range nodeAddrs {
		if !a.IsValid() {
			return ruleParams{}, errors.New("invalid node address")
		}
		if a = a.Unmap(); a.Is4() && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	// Sorted so that the same set in another order is the same rule set,
	// and Check does not report drift when the caller's order changes.
	slices.SortFunc(addrs, netip.Addr.Compare)
	return ruleParams{
		outbound: o.OutboundPort, inboundPlain: o.InboundPlaintextPort, inboundHBONE: o.InboundHBONEPort,
		mark: o.Mark, connMark: o.ConnMark, mask: o.MarkMask,
		nodeAddrs: addrs,
	}, nil
}

// wantedRules is the rule set of an enrolled pod, in the exact form
// iptables-save prints, so that Check can compare strings. It mirrors
// Istio's in-pod rules in REDIRECT (not TPROXY) mode.
func wantedRules(p ruleParams) ruleSet {
	mark := fmt.Sprintf("0x%x/0x%x", p.mark, p.mask)
	connMark := fmt.Sprintf("0x%x/0x%x", p.connMark, p.mask)

	// mangle: a packet of ztunnel's (marked) that loops back into the pod —
	// ztunnel connecting to the app — tags its connection; later packets of
	// that connection, the app's replies included, get the tag back as
	// their mark, so nothing below ever captures them.
	mangle := table{
		name: "mangle",
		chains: []chain{
			{chainPrerouting, []string{
				fmt.Sprintf("-m mark --mark %s -j CONNMARK --set-xmark %s", mark, connMark),
			}},
			{chainOutput, []string{
				fmt.Sprintf("-m connmark --mark %s -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff", connMark),
			}},
		},
		jumps: []rule{
			{"PREROUTING", "-j " + chainPrerouting},
			{"OUTPUT", "-j " + chainOutput},
		},
	}

	// nat sees only the first packet of each connection, so REDIRECT here
	// decides a whole connection. Loopback traffic never reaches nat
	// PREROUTING (its NAT was decided in OUTPUT); "! -i lo" says so anyway.
	var prert []string
	for _, a := range p.nodeAddrs {
		prert = append(prert, fmt.Sprintf("-s %s/32 -p tcp -j RETURN", a))
	}
	prert = append(prert, fmt.Sprintf(
		"! -i lo -p tcp -m tcp ! --dport %d -m mark ! --mark %s -j REDIRECT --to-ports %d",
		p.inboundHBONE, mark, p.inboundPlain))
	nat := table{
		name: "nat",
		chains: []chain{
			{chainPrerouting, prert},
			{chainOutput, []string{
				fmt.Sprintf("-p tcp -m mark --mark %s -j RETURN", connMark),
				fmt.Sprintf("! -o lo -p tcp -m mark ! --mark %s -j REDIRECT --to-ports %d", mark, p.outbound),
			}},
		},
		jumps: []rule{
			{"PREROUTING", "-j " + chainPrerouting},
			{"OUTPUT", "-j " + chainOutput},
		},
	}
	return ruleSet{tables: []table{mangle, nat}}
}

// Render returns the iptables-restore input (for --noflush) that installs
// the rules of an enrolled pod in a netns holding none of ours: what Enroll
// applies to a fresh pod. It is a pure function of the options and the pod's
// node addresses; it runs nothing.
func (t *IPTables) Render(p Pod) (string, error) {
	rs, err := t.wanted(p)
	if err != nil {
		return "", fmt.Errorf("%s: render: %w", p.label(), err)
	}
	return plan(rs, savedState{}), nil
}

// wanted is the rule set of p when enrolled.
func (t *IPTables) wanted(p Pod) (ruleSet, error) {
	params, err := newRuleParams(t.opts, p.NodeAddrs)
	if err != nil {
		return ruleSet{}, err
	}
	return wantedRules(params), nil
}

// savedState is what iptables-save shows of the netns, per table name.
type savedState map[string]*savedTable

type savedTable struct {
	chains []string // user-defined chains, in order
	rules  []rule
}

// parseSave reads iptables-save output. It keeps user-defined chains and
// all rules; counters and policies are not needed.
func parseSave(out string) (savedState, error) {
	st := savedState{}
	var cur *savedTable
	for i, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			name := line[1:]
			if st[name] == nil {
				st[name] = &savedTable{}
			}
			cur = st[name]
		case cur == nil:
			return nil, fmt.Errorf("iptables-save line %d: %q outside a table", i+1, line)
		case line == "COMMIT":
			cur = nil
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("iptables-save line %d: bad chain %q", i+1, line)
			}
			if f[1] == "-" { // built-in chains have a policy instead
				cur.chains = append(cur.chains, f[0])
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 {
				return nil, fmt.Errorf("iptables-save line %d: bad rule %q", i+1, line)
			}
			cur.rules = append(cur.rules, rule{chain: f[1], spec: strings.Join(f[2:], " ")})
		default:
			return nil, fmt.Errorf("iptables-save line %d: unexpected %q", i+1, line)
		}
	}
	return st, nil
}

func owned(chainName string) bool { return strings.HasPrefix(chainName, ChainPrefix) }

// targetsOwned reports whether a rule jumps or goes to one of our chains.
func targetsOwned(spec string) bool {
	f := strings.Fields(spec)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && owned(f[i+1]) {
			return true
		}
	}
	return false
}

// plan returns the iptables-restore --noflush input that turns the saved
// state into the wanted one, touching only our chains and the rules that
// target them; "" when they already match. One restore is one nf_tables
// transaction, so the pod never sees a half-applied rule set. Unenroll is
// plan(ruleSet{}, saved).
func plan(want ruleSet, saved savedState) string {
	var names []string
	wantByName := map[string]table{}
	for _, t := range want.tables {
		names = append(names, t.name)
		wantByName[t.name] = t
	}
	var extra []string
	for name := range saved {
		if _, ok := wantByName[name]; !ok {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	names = append(names, extra...)

	var b strings.Builder
	for _, name := range names {
		tb := planTable(wantByName[name], saved[name])
		if len(tb) == 0 {
			continue
		}
		b.WriteString("*" + name + "\n")
		for _, l := range tb {
			b.WriteString(l + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// planTable returns the restore lines for one table, ordered so that each
// line is valid where it stands: foreign jumps go before the chains they
// target are deleted, chains are (re)declared before rules use them.
func planTable(want table, saved *savedTable) []string {
	if saved == nil {
		saved = &savedTable{}
	}
	savedRules := map[string][]string{}
	for _, r := range saved.rules {
		if owned(r.chain) {
			savedRules[r.chain] = append(savedRules[r.chain], r.spec)
		}
	}

	var delJumps, declare, drop, add, addJumps []string

	// Jumps into our chains from elsewhere: keep one copy of each wanted
	// jump, delete the rest (duplicates, stale ones).
	kept := map[rule]bool{}
	for _, r := range saved.rules {
		if owned(r.chain) || !targetsOwned(r.spec) {
			continue
		}
		if slices.Contains(want.jumps, r) && !kept[r] {
			kept[r] = true
			continue
		}
		delJumps = append(delJumps, "-D "+r.chain+" "+r.spec)
	}
	for _, j := range want.jumps {
		if !kept[j] {
			addJumps = append(addJumps, "-A "+j.chain+" "+j.spec)
		}
	}

	// Our chains: a declaration creates a missing chain or flushes an
	// existing one, so rewrite only those whose rules differ.
	wanted := map[string]bool{}
	for _, c := range want.chains {
		wanted[c.name] = true
		exists := slices.Contains(saved.chains, c.name)
		if exists && slices.Equal(savedRules[c.name], c.rules) {
			continue
		}
		declare = append(declare, fmt.Sprintf(":%s - [0:0]", c.name))
		for _, r := range c.rules {
			add = append(add, "-A "+c.name+" "+r)
		}
	}
	// Chains of ours that are not wanted: flush all, then delete, since
	// they may reference each other.
	var stale []string
	for _, c := range saved.chains {
		if owned(c) && !wanted[c] {
			stale = append(stale, c)
		}
	}
	for _, c := range stale {
		drop = append(drop, "-F "+c)
	}
	for _, c := range stale {
		drop = append(drop, "-X "+c)
	}
	return slices.Concat(delJumps, declare, drop, add, addJumps)
}
