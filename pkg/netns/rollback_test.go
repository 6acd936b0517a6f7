package netns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var errInjected = errors.New("injected failure")

// buildCall is one constructor call of the scenario the rollback test
// replays: every step of every call is failed once.
type buildCall struct {
	what string
	do   func(ctx context.Context, topo *Topology) error
}

var rollbackScenario = []buildCall{
	{"node a", func(ctx context.Context, t *Topology) error { _, err := t.AddNode(ctx, "a"); return err }},
	{"pod a1", func(ctx context.Context, t *Topology) error { _, err := t.AddPod(ctx, "a", "a1"); return err }},
	{"node b", func(ctx context.Context, t *Topology) error { _, err := t.AddNode(ctx, "b"); return err }},
	{"pod b1", func(ctx context.Context, t *Topology) error { _, err := t.AddPod(ctx, "b", "b1"); return err }},
	{"empty pod e1", func(ctx context.Context, t *Topology) error { _, err := t.AddEmptyPod(ctx, "b", "e1"); return err }},
}

func TestRollbackAtEveryStep(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	hostBefore := hostSnapshot(t)
	fdsBefore := openNetnsFds(t)

	// A clean run records every step, in order.
	var steps []string
	record := func(step string) error { steps = append(steps, step); return nil }
	topo, err := New(ctx, Options{NamePrefix: "ambittest-rb", fault: record})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rollbackScenario {
		if err := c.do(ctx, topo); err != nil {
			t.Fatal(err)
		}
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if len(steps) < 20 || len(slices.Compact(slices.Clone(steps))) != len(steps) {
		t.Fatalf("steps not recorded uniquely: %q", steps)
	}

	for i, failAt := range steps {
		prefix := fmt.Sprintf("ambittest-rb%d", i)
		t.Run(strings.ReplaceAll(failAt, " ", "_"), func(t *testing.T) {
			replayFailingAt(t, ctx, prefix, failAt)
			if left := runNetns(t, prefix+"-"); len(left) != 0 {
				t.Errorf("left in %s: %v", RunDir, left)
			}
			if m := mountsUnder(t, RunDir, prefix+"-"); len(m) != 0 {
				t.Errorf("mounts left: %v", m)
			}
			if got := openNetnsFds(t); got != fdsBefore {
				t.Errorf("namespace descriptors open: %d, before: %d", got, fdsBefore)
			}
		})
	}
	if after := hostSnapshot(t); after != hostBefore {
		t.Errorf("host namespace changed.\nbefore:\n%s\nafter:\n%s", hostBefore, after)
	}
}

// replayFailingAt builds the scenario with step failAt failing, checks that
// the failed constructor left the topology exactly as before the call, and
// closes what was built.
func replayFailingAt(t *testing.T, ctx context.Context, prefix, failAt string) {
	fault := func(step string) error {
		if step == failAt {
			return errInjected
		}
		return nil
	}
	topo, err := New(ctx, Options{NamePrefix: prefix, fault: fault})
	if err != nil {
		if !errors.Is(err, errInjected) {
			t.Fatalf("New: %v, want the injected failure", err)
		}
		return
	}
	defer func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	}()
	for _, c := range rollbackScenario {
		before := topologyState(t, prefix)
		err := c.do(ctx, topo)
		if err == nil {
			continue
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("%s: %v, want the injected failure", c.what, err)
		}
		if after := topologyState(t, prefix); after != before {
			t.Errorf("%s failed at %q but changed the topology.\nbefore:\n%s\nafter:\n%s", c.what, failAt, before, after)
		}
		return
	}
	t.Fatalf("step %q never ran", failAt)
}

// topologyState describes every namespace of a run: its links, IPv4
// addresses and IPv4 routes (all tables), and ip_forward. Link and carrier
// state are left out: they follow asynchronously when ports come and go.
func topologyState(t *testing.T, prefix string) string {
	t.Helper()
	var b strings.Builder
	for _, name := range runNetns(t, prefix+"-") {
		h, err := Open(name)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "netns %s\n", name)
		err = withRoute(h, func(nh *netlink.Handle) error {
			links, err := nh.LinkList()
			if err != nil {
				return err
			}
			for _, l := range links {
				a := l.Attrs()
				fmt.Fprintf(&b, "  link %d %s %s master=%d\n", a.Index, a.Name, l.Type(), a.MasterIndex)
			}
			addrs, err := nh.AddrList(nil, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				fmt.Fprintf(&b, "  addr %d %s\n", a.LinkIndex, a.IPNet)
			}
			routes, err := nh.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
			if err != nil {
				return err
			}
			for _, r := range routes {
				fmt.Fprintf(&b, "  route table=%d dst=%v gw=%v dev=%d src=%v\n", r.Table, r.Dst, r.Gw, r.LinkIndex, r.Src)
			}
			return nil
		})
		if err == nil {
			var fwd string
			fwd, err = h.Sysctl("net.ipv4.ip_forward")
			fmt.Fprintf(&b, "  ip_forward=%s\n", fwd)
		}
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}
