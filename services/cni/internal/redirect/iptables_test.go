package redirect

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/ambitmesh/ambit/pkg/netns"
)

func TestPodWithoutNetns(t *testing.T) {
	ipt := NewIPTables(IPTablesOptions{})
	ctx := t.Context()
	if err := ipt.Enroll(ctx, Pod{UID: "nonet"}); err == nil || !strings.Contains(err.Error(), "nonet") {
		t.Errorf("Enroll without netns: %v", err)
	}
	if err := ipt.Unenroll(ctx, Pod{UID: "nonet"}); err == nil {
		t.Error("Unenroll without netns succeeded")
	}
	if _, err := ipt.Check(ctx, Pod{UID: "nonet"}); err == nil {
		t.Error("Check without netns succeeded")
	}
	if got := ipt.Mode(); got != "iptables" {
		t.Errorf("Mode = %q", got)
	}
}

// requireInstalledOnce checks that every rule of the fresh-install script
// is in the save output exactly once, in its table, and that the tables
// hold no other rule but the foreign one.
func requireInstalledOnce(t *testing.T, save, script, foreign string) {
	t.Helper()
	want, err := parseSave(script)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseSave(save)
	if err != nil {
		t.Fatal(err)
	}
	for name, gt := range got {
		var rules []rule
		if wt := want[name]; wt != nil {
			rules = wt.rules
		}
		for _, r := range rules {
			if n := countRule(gt.rules, r); n != 1 {
				t.Errorf("table %s: -A %s %s appears %d times, want once", name, r.chain, r.spec, n)
			}
		}
		for _, r := range gt.rules {
			if countRule(rules, r) == 0 && "-A "+r.chain+" "+r.spec != foreign {
				t.Errorf("table %s: unexpected rule -A %s %s", name, r.chain, r.spec)
			}
		}
	}
	for name := range want {
		if got[name] == nil {
			t.Errorf("table %s missing", name)
		}
	}
	if t.Failed() {
		t.Logf("iptables-save:\n%s", save)
	}
}

func countRule(rules []rule, r rule) int {
	n := 0
	for _, x := range rules {
		if x == r {
			n++
		}
	}
	return n
}

func TestEnrollIdempotentAndUnenrollClean(t *testing.T) {
	requirePrivileged(t)
	ctx := testContext(t)
	h := createNetns(t, "idem")
	ipt := NewIPTables(IPTablesOptions{Logger: testLogger(t)})
	pod := Pod{UID: "idem", Netns: h, NodeAddrs: []netip.Addr{netip.MustParseAddr("10.251.9.1")}}
	script, err := ipt.Render(pod)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing installed: Check false, Unenroll fine.
	if ok, err := ipt.Check(ctx, pod); err != nil || ok {
		t.Fatalf("Check on a fresh netns = %v, %v", ok, err)
	}
	if err := ipt.Unenroll(ctx, pod); err != nil {
		t.Fatalf("Unenroll with nothing installed: %v", err)
	}

	// A rule of someone else's, which nothing of ours may touch.
	const foreign = "-A PREROUTING -s 10.99.0.0/16 -j RETURN"
	iptablesIn(t, h, "-t", "nat", "-A", "PREROUTING", "-s", "10.99.0.0/16", "-j", "RETURN")

	for range 2 {
		if err := ipt.Enroll(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	requireInstalledOnce(t, saveIn(t, h), script, foreign)
	if ok, err := ipt.Check(ctx, pod); err != nil || !ok {
		t.Fatalf("Check after Enroll = %v, %v", ok, err)
	}
	if v, err := h.Sysctl("net.ipv4.tcp_migrate_req"); err != nil || v != "1" {
		t.Errorf("tcp_migrate_req = %q, %v; want 1", v, err)
	}

	// Drift: a duplicate jump, an extra rule in our chain, a stale chain of
	// ours in a table we do not use. Check notices, Enroll repairs.
	iptablesIn(t, h, "-t", "nat", "-A", "PREROUTING", "-j", "AMBIT_PRERT")
	iptablesIn(t, h, "-t", "nat", "-I", "AMBIT_OUTPUT", "1", "-p", "tcp", "-j", "RETURN")
	iptablesIn(t, h, "-t", "raw", "-N", "AMBIT_STALE")
	iptablesIn(t, h, "-t", "raw", "-A", "PREROUTING", "-j", "AMBIT_STALE")
	if ok, err := ipt.Check(ctx, pod); err != nil || ok {
		t.Fatalf("Check after drift = %v, %v; want false", ok, err)
	}
	if err := ipt.Enroll(ctx, pod); err != nil {
		t.Fatal(err)
	}
	save := saveIn(t, h)
	requireInstalledOnce(t, save, script, foreign)
	if strings.Contains(save, "AMBIT_STALE") {
		t.Errorf("stale chain survived Enroll:\n%s", save)
	}
	if ok, err := ipt.Check(ctx, pod); err != nil || !ok {
		t.Fatalf("Check after repair = %v, %v", ok, err)
	}

	// Concurrent Enrolls of one pod still leave one copy.
	iptablesIn(t, h, "-t", "mangle", "-D", "PREROUTING", "-j", "AMBIT_PRERT")
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if err := ipt.Enroll(ctx, pod); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	requireInstalledOnce(t, saveIn(t, h), script, foreign)

	for range 2 {
		if err := ipt.Unenroll(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	save = saveIn(t, h)
	if strings.Contains(save, "AMBIT") {
		t.Errorf("Unenroll left chains or jumps of ours:\n%s", save)
	}
	if !strings.Contains(save, foreign+"\n") {
		t.Errorf("Unenroll removed a foreign rule:\n%s", save)
	}
	if ok, err := ipt.Check(ctx, pod); err != nil || ok {
		t.Fatalf("Check after Unenroll = %v, %v", ok, err)
	}
}

func TestEnrollErrorNamesPod(t *testing.T) {
	requirePrivileged(t)
	h := createNetns(t, "err")
	ipt := NewIPTables(IPTablesOptions{SaveCmd: "/nonexistent/iptables-save"})
	err := ipt.Enroll(testContext(t), Pod{UID: "uid-err", Netns: h})
	if err == nil || !strings.Contains(err.Error(), "uid-err") || !strings.Contains(err.Error(), h.Name()) {
		t.Errorf("Enroll with a missing binary: %v; want an error naming pod and netns", err)
	}
}

// TestRedirectionEndToEnd proves the rules on real traffic between two
// pods of one node, with test listeners standing in for ztunnel.
func TestRedirectionEndToEnd(t *testing.T) {
	requirePrivileged(t)
	ctx := testContext(t)
	topo, err := netns.New(ctx, netns.Options{NamePrefix: "redirtest", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("topology close: %v", err)
		}
	})
	node, err := topo.AddNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	a, err := topo.AddPod(ctx, "n1", "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := topo.AddPod(ctx, "n1", "b")
	if err != nil {
		t.Fatal(err)
	}
	ipt := NewIPTables(IPTablesOptions{Logger: testLogger(t)})
	podA := Pod{UID: "a", Netns: a.NS(), NodeAddrs: []netip.Addr{node.Gateway()}}
	podB := Pod{UID: "b", Netns: b.NS(), NodeAddrs: []netip.Addr{node.Gateway()}}

	const mark = DefaultMark
	ap := netip.AddrPortFrom
	bApp := ap(b.IP(), 8080)
	bHBONE := ap(b.IP(), DefaultInboundHBONEPort)
	nodeSvc := ap(node.Gateway(), 9090)

	// Stand-ins for ztunnel (marked) and the apps (unmarked).
	aOut := listen(t, a.NS(), DefaultOutboundPort, mark)
	bOut := listen(t, b.NS(), DefaultOutboundPort, mark)
	bIn := listen(t, b.NS(), DefaultInboundPlaintextPort, mark)
	bHBONELn := listen(t, b.NS(), DefaultInboundHBONEPort, mark)
	bAppLn := listen(t, b.NS(), 8080, 0)
	nodeLn := listen(t, node.NS(), 9090, 0)

	if err := ipt.Enroll(ctx, podA); err != nil {
		t.Fatal(err)
	}
	if v, err := a.NS().Sysctl("net.ipv4.tcp_migrate_req"); err != nil || v != "1" {
		t.Errorf("tcp_migrate_req in A = %q, %v; want 1", v, err)
	}
	expectLands(t, "A app -> B app, A enrolled", a.NS(), 0, bApp, aOut, bApp)
	expectLands(t, "A marked -> B app, A enrolled", a.NS(), mark, bApp, bAppLn, netip.AddrPort{})

	if err := ipt.Enroll(ctx, podB); err != nil {
		t.Fatal(err)
	}
	if v, err := b.NS().Sysctl("net.ipv4.tcp_migrate_req"); err != nil || v != "1" {
		t.Errorf("tcp_migrate_req in B = %q, %v; want 1", v, err)
	}
	expectLands(t, "A ztunnel -> B app port", a.NS(), mark, bApp, bIn, bApp)
	expectLands(t, "A ztunnel -> B HBONE port", a.NS(), mark, bHBONE, bHBONELn, bHBONE)
	expectLands(t, "B ztunnel -> node", b.NS(), mark, nodeSvc, nodeLn, netip.AddrPort{})
	expectLands(t, "B app -> node", b.NS(), 0, nodeSvc, bOut, nodeSvc)
	probe := expectLands(t, "node probe -> B app", node.NS(), 0, bApp, bAppLn, bApp)
	if got := probe.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(); got != node.Gateway() {
		t.Errorf("probe came from %v, want the node gateway %v", got, node.Gateway())
	}
	// Inside B: loopback and the pod's own IP are never captured, whether
	// the app or ztunnel (towards the app) connects.
	expectLands(t, "B app -> 127.0.0.1 app", b.NS(), 0, ap(netip.MustParseAddr("127.0.0.1"), 8080), bAppLn, ap(netip.MustParseAddr("127.0.0.1"), 8080))
	expectLands(t, "B app -> own IP", b.NS(), 0, bApp, bAppLn, bApp)
	expectLands(t, "B ztunnel -> app", b.NS(), mark, bApp, bAppLn, bApp)

	if ok, err := ipt.Check(ctx, podB); err != nil || !ok {
		t.Fatalf("Check(B) = %v, %v", ok, err)
	}
	if err := ipt.Unenroll(ctx, podB); err != nil {
		t.Fatal(err)
	}
	if ok, err := ipt.Check(ctx, podB); err != nil || ok {
		t.Fatalf("Check(B) after Unenroll = %v, %v", ok, err)
	}
	expectLands(t, "A marked -> B app, B unenrolled", a.NS(), mark, bApp, bAppLn, netip.AddrPort{})
	if err := ipt.Unenroll(ctx, podA); err != nil {
		t.Fatal(err)
	}
	expectLands(t, "A app -> B app, both unenrolled", a.NS(), 0, bApp, bAppLn, netip.AddrPort{})
}
