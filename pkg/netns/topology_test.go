package netns

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
)

// newTestTopology builds a topology closed at the end of the test.
func newTestTopology(t *testing.T, ctx context.Context, opts Options) *Topology {
	t.Helper()
	if opts.NamePrefix == "" {
		opts.NamePrefix = "ambittest"
	}
	topo, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	return topo
}

func addNode(t *testing.T, ctx context.Context, topo *Topology, name string) *Node {
	t.Helper()
	n, err := topo.AddNode(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func addPod(t *testing.T, ctx context.Context, topo *Topology, node, name string) *Pod {
	t.Helper()
	p, err := topo.AddPod(ctx, node, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ping sends one echo request from src to dst and waits up to 2 s.
func ping(ctx context.Context, src *Pod, dst netip.Addr) error {
	out, err := src.NS().CombinedOutput(ctx, "ping", "-n", "-c1", "-W2", dst.String())
	if err != nil {
		return fmt.Errorf("ping %s -> %v: %w\n%s", src.Name(), dst, err, out)
	}
	return nil
}

// pingAll pings every pod from every other pod, concurrently.
func pingAll(t *testing.T, ctx context.Context, pods []*Pod) {
	t.Helper()
	var wg sync.WaitGroup
	for _, src := range pods {
		for _, dst := range pods {
			if src == dst {
				continue
			}
			wg.Go(func() {
				if err := ping(ctx, src, dst.IP()); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
}

func TestTopologyTwoNodesTwoPods(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	hostBefore := hostSnapshot(t)
	fdsBefore := openNetnsFds(t)

	topo, err := New(ctx, Options{NamePrefix: "ambittest"})
	if err != nil {
		t.Fatal(err)
	}
	prefix := "ambittest-" + topo.RunID()
	// Pods exist on a before b joins: b's join must add routes to a.
	a := addNode(t, ctx, topo, "a")
	pods := []*Pod{addPod(t, ctx, topo, "a", "a1"), addPod(t, ctx, topo, "a", "a2")}
	b := addNode(t, ctx, topo, "b")
	pods = append(pods, addPod(t, ctx, topo, "b", "b1"), addPod(t, ctx, topo, "b", "b2"))

	// Addressing follows the defaults.
	for _, c := range []struct {
		got, want string
	}{
		{a.FabricIP().String(), "10.250.0.1"},
		{b.FabricIP().String(), "10.250.0.2"},
		{a.PodCIDR().String(), "10.251.1.0/24"},
		{b.PodCIDR().String(), "10.251.2.0/24"},
		{a.Gateway().String(), "10.251.1.1"},
		{pods[0].IP().String(), "10.251.1.2"},
		{pods[1].IP().String(), "10.251.1.3"},
		{pods[2].IP().String(), "10.251.2.2"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	// Accessors find what was built.
	if n, ok := topo.Node("b"); !ok || n != b {
		t.Errorf("Node(b) = %v, %v", n, ok)
	}
	if p, ok := topo.Pod("b2"); !ok || p.Node() != b || p.IP() != pods[3].IP() {
		t.Errorf("Pod(b2) = %v, %v", p, ok)
	}
	if _, ok := topo.Pod("nope"); ok {
		t.Error("Pod(nope) found")
	}
	if len(topo.Nodes()) != 2 || len(topo.Pods()) != 4 {
		t.Errorf("Nodes, Pods = %d, %d", len(topo.Nodes()), len(topo.Pods()))
	}
	if got := len(runNetns(t, prefix)); got != 7 {
		t.Errorf("%d namespaces under %s, want 7 (fabric, 2 nodes, 4 pods)", got, RunDir)
	}

	pingAll(t, ctx, pods)

	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if err := topo.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := topo.AddNode(ctx, "c"); err == nil {
		t.Error("AddNode after Close succeeded")
	}

	if list := ipNetnsList(t); strings.Contains(list, prefix) {
		t.Errorf("ip netns list still shows the run:\n%s", list)
	}
	if left := runNetns(t, prefix); len(left) != 0 {
		t.Errorf("left in %s: %v", RunDir, left)
	}
	if m := mountsUnder(t, RunDir, prefix); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	if got := openNetnsFds(t); got != fdsBefore {
		t.Errorf("namespace descriptors open after Close: %d, before: %d", got, fdsBefore)
	}
	if after := hostSnapshot(t); after != hostBefore {
		t.Errorf("host namespace changed.\nbefore:\n%s\nafter:\n%s", hostBefore, after)
	}
}

func TestTopologyEmptyPodForCNI(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	topo := newTestTopology(t, ctx, Options{})
	n := addNode(t, ctx, topo, "n")
	p, err := topo.AddEmptyPod(ctx, "n", "cni")
	if err != nil {
		t.Fatal(err)
	}
	if p.IP().IsValid() || p.Interface() != "" || p.HostPort() != "" {
		t.Errorf("empty pod has IP %v, interface %q, host port %q", p.IP(), p.Interface(), p.HostPort())
	}
	if _, err := os.Stat(p.NetnsPath()); err != nil {
		t.Errorf("pod netns path: %v", err)
	}
	out, err := p.NS().CombinedOutput(ctx, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out), "\n") != 1 || !strings.Contains(string(out), "state DOWN") {
		t.Errorf("empty pod should hold only lo, down:\n%s", out)
	}

	// What a CNI runtime needs is there and consistent with the node.
	if _, err := os.Stat(n.NetnsPath()); err != nil {
		t.Errorf("node netns path: %v", err)
	}
	out, err = n.NS().CombinedOutput(ctx, "ip", "-4", "-o", "addr", "show", "dev", n.BridgeName())
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := fmt.Sprintf("inet %v/%d", n.Gateway(), n.PodCIDR().Bits())
	if !strings.Contains(string(out), want) {
		t.Errorf("bridge %s lacks %s:\n%s", n.BridgeName(), want, out)
	}

	// The next wired pod still gets the first free address.
	wired := addPod(t, ctx, topo, "n", "wired")
	if wired.IP().String() != "10.251.1.2" {
		t.Errorf("wired pod IP %v", wired.IP())
	}
	if err := topo.RemovePod("cni"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.NetnsPath()); !os.IsNotExist(err) {
		t.Errorf("removed pod netns still there: %v", err)
	}
}

func TestTopologyRemovePodFreesAddress(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	topo := newTestTopology(t, ctx, Options{})
	addNode(t, ctx, topo, "n")
	p1 := addPod(t, ctx, topo, "n", "p1")
	p2 := addPod(t, ctx, topo, "n", "p2")
	ip1, netnsPath := p1.IP(), p1.NetnsPath()
	if err := topo.RemovePod("p1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(netnsPath); !os.IsNotExist(err) {
		t.Errorf("netns of removed pod: %v", err)
	}
	out, err := topo.Nodes()[0].NS().CombinedOutput(ctx, "ip", "-o", "link", "show", "dev", p1.HostPort())
	if err == nil {
		t.Errorf("host port of removed pod still exists: %s", out)
	}
	p3 := addPod(t, ctx, topo, "n", "p3")
	if p3.IP() != ip1 {
		t.Errorf("freed %v, next pod got %v", ip1, p3.IP())
	}
	if p3.HostPort() == p1.HostPort() {
		t.Errorf("host port name %s reused", p3.HostPort())
	}
	pingAll(t, ctx, []*Pod{p2, p3})
	if err := topo.RemovePod("p1"); err == nil {
		t.Error("removing a removed pod succeeded")
	}
}

// Several topologies on one kernel at once, with the same options, must not
// collide in names or traffic.
func TestParallelTopologies(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	const n = 3
	runs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			topo, err := New(ctx, Options{NamePrefix: "ambittest"})
			if err != nil {
				t.Error(err)
				return
			}
			defer func() {
				if err := topo.Close(); err != nil {
					t.Error(err)
				}
			}()
			runs[i] = topo.RunID()
			var pods []*Pod
			for _, node := range []string{"x", "y"} {
				if _, err := topo.AddNode(ctx, node); err != nil {
					t.Error(err)
					return
				}
				p, err := topo.AddPod(ctx, node, node+"1")
				if err != nil {
					t.Error(err)
					return
				}
				pods = append(pods, p)
			}
			pingAll(t, ctx, pods)
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range runs {
		if seen[r] {
			t.Errorf("run id %s used twice", r)
		}
		seen[r] = true
		if left := runNetns(t, "ambittest-"+r); len(left) != 0 {
			t.Errorf("left in %s: %v", RunDir, left)
		}
	}
}

func TestTopologyRejectsBadInput(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	topo := newTestTopology(t, ctx, Options{})
	addNode(t, ctx, topo, "n")
	for _, c := range []struct {
		what string
		err  func() error
	}{
		{"duplicate node", func() error { _, err := topo.AddNode(ctx, "n"); return err }},
		{"bad node name", func() error { _, err := topo.AddNode(ctx, "N/../x"); return err }},
		{"pod on missing node", func() error { _, err := topo.AddPod(ctx, "missing", "p"); return err }},
		{"remove missing pod", func() error { return topo.RemovePod("missing") }},
	} {
		if c.err() == nil {
			t.Errorf("%s: no error", c.what)
		}
	}
	addPod(t, ctx, topo, "n", "p")
	if _, err := topo.AddEmptyPod(ctx, "n", "p"); err == nil {
		t.Error("duplicate pod: no error")
	}
}

func TestOptionsValidate(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"custom", Options{NamePrefix: "x", FabricCIDR: p("10.9.0.0/28"), PodCIDRPool: p("10.10.0.0/20"), PodCIDRBits: 26}, true},
		{"not 10/8", Options{FabricCIDR: p("192.168.0.0/24")}, false},
		{"host bits", Options{FabricCIDR: p("10.250.0.1/24")}, false},
		{"ipv6", Options{PodCIDRPool: p("fd00::/64")}, false},
		{"overlap", Options{FabricCIDR: p("10.251.0.0/24")}, false},
		{"pod bits too small", Options{PodCIDRBits: 16}, false},
		{"pod bits too large", Options{PodCIDRBits: 31}, false},
		{"bad prefix", Options{NamePrefix: "Has Space"}, false},
		{"long prefix", Options{NamePrefix: strings.Repeat("a", 33)}, false},
	} {
		err := tc.opts.withDefaults().validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestInterfaceNamesFit(t *testing.T) {
	names := topoNames{prefix: "ambit", run: "abcdef"}
	if got := names.fabricBridge(); len(got) > maxIfName {
		t.Errorf("fabric bridge %q too long", got)
	}
	// Large ordinals still fit; past that, names are refused, not truncated.
	for _, f := range []func(int) (string, error){names.fabricPort, names.nodeBridge} {
		if _, err := f(999); err != nil {
			t.Error(err)
		}
	}
	if _, err := names.podPort(99999); err != nil {
		t.Error(err)
	}
	if _, err := names.podPort(99999999); err == nil {
		t.Error("overlong pod port name accepted")
	}
}

func TestAddressMath(t *testing.T) {
	pool := netip.MustParsePrefix("10.251.0.0/16")
	if s, err := nthSubnet(pool, 24, 3); err != nil || s.String() != "10.251.3.0/24" {
		t.Errorf("nthSubnet = %v, %v", s, err)
	}
	if _, err := nthSubnet(pool, 24, 256); err == nil {
		t.Error("subnet 256 of a /16 into /24s accepted")
	}
	sub := netip.MustParsePrefix("10.251.3.0/24")
	if a, err := nthHost(sub, 254); err != nil || a.String() != "10.251.3.254" {
		t.Errorf("nthHost(254) = %v, %v", a, err)
	}
	for _, n := range []int{0, 255} {
		if _, err := nthHost(sub, n); err == nil {
			t.Errorf("nthHost(%d) accepted (network or broadcast)", n)
		}
	}
}
