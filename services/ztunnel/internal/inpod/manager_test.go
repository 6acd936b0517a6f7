package inpod

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ambitmesh/ambit/pkg/netns"
)

func TestOptions(t *testing.T) {
	r := newRecorder(t)
	for _, opts := range []Options{
		{},
		{Handlers: Handlers{Outbound: r.handlers().Outbound}},
		{Handlers: r.handlers(), Ports: Ports{Outbound: 70000}},
		{Handlers: r.handlers(), Ports: Ports{Outbound: -1}},
		{Handlers: r.handlers(), Ports: Ports{InboundPlaintext: 15008}},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v) accepted", opts.Ports)
		}
	}
	m, err := New(Options{Handlers: r.handlers()})
	if err != nil {
		t.Fatal(err)
	}
	if m.ports != [numKinds]int{15001, 15006, 15008} || m.mark != 0x539 {
		t.Fatalf("defaults: ports %v mark %#x", m.ports, m.mark)
	}
	if err := m.Add(context.Background(), "u", podInfo("p"), nil); err == nil {
		t.Fatal("Add without netns accepted")
	}
	if err := m.Keep(context.Background(), "u"); err == nil {
		t.Fatal("Keep of an unknown pod accepted")
	}
	if err := m.Del(context.Background(), "u"); err != nil {
		t.Fatalf("Del of an unknown pod: %v", err)
	}
}

// freePorts returns distinct ports nothing listens on in the host netns,
// so a connection there must be refused.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// TestListenersInPodNetns connects from inside the pod's netns to each
// port and checks where it lands, that the listener socket lives in the pod
// netns (not the host's) and that accepted sockets carry the mark.
func TestListenersInPodNetns(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	ns := createNetns(t, "inpod")
	pp := freePorts(t, 3)
	ports := Ports{Outbound: pp[0], InboundPlaintext: pp[1], InboundHBONE: pp[2]}
	r := newRecorder(t)
	m := newManager(t, r, Options{Ports: ports})
	if err := m.Add(ctx, "uid-1", podInfo("web"), openNetns(t, ns)); err != nil {
		t.Fatal(err)
	}
	pod, ok := m.Pod("uid-1")
	if !ok || pod.Name() != "web" || pod.Namespace() != "ns1" || pod.ServiceAccount() != "sa-web" || pod.UID() != "uid-1" {
		t.Fatalf("Pod = %v, %v", pod, ok)
	}
	if len(pod.IPs()) != 0 {
		t.Fatalf("a netns with only loopback has IPs %v", pod.IPs())
	}
	podCookie, err := ns.Cookie()
	if err != nil {
		t.Fatal(err)
	}
	for kind, port := range map[Kind]int{Outbound: ports.Outbound, InboundPlaintext: ports.InboundPlaintext, InboundHBONE: ports.InboundHBONE} {
		t.Run(kind.String(), func(t *testing.T) {
			if got := pod.Addr(kind).(*net.TCPAddr).Port; got != port {
				t.Fatalf("Addr(%v) port %d, want %d", kind, got, port)
			}
			for _, host := range []string{"127.0.0.1", "::1"} {
				c := dialFrom(t, ns, net.JoinHostPort(host, strconv.Itoa(port)))
				a := r.next(t)
				if a.kind != kind || a.pod != pod {
					t.Fatalf("connection to %s:%d reached the %v handler of %v", host, port, a.kind, a.pod)
				}
				echo(t, c, a.c)
				if mark := sockoptInt(t, a.c, unix.SOL_SOCKET, unix.SO_MARK); mark != 0x539 {
					t.Errorf("accepted socket mark %#x, want 0x539", mark)
				}
				if cookie := sockoptUint64(t, a.c, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE); cookie != podCookie {
					t.Errorf("accepted socket is in netns cookie %d, want the pod's %d", cookie, podCookie)
				}
				a.c.Close()
			}
			// Nothing of ours in the host netns.
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err == nil {
				c.Close()
				t.Fatalf("port %d is open in the host netns", port)
			}
			if !isRefused(err) {
				t.Fatalf("dial host port %d: %v, want connection refused", port, err)
			}
		})
	}
}

// TestReusePortOverlap runs two managers — an old and a new ztunnel — on
// the same ports of the same pod netns at once.
func TestReusePortOverlap(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	ns := createNetns(t, "reuse")
	rOld, rNew := newRecorder(t), newRecorder(t)
	mOld := newManager(t, rOld, Options{})
	mNew := newManager(t, rNew, Options{})
	if err := mOld.Add(ctx, "u", podInfo("web"), openNetns(t, ns)); err != nil {
		t.Fatal(err)
	}
	if err := mNew.Add(ctx, "u", podInfo("web"), openNetns(t, ns)); err != nil {
		t.Fatalf("second ztunnel cannot bind the same ports: %v", err)
	}
	// A socket without SO_REUSEPORT is refused: the port is really held.
	if ln, err := ns.Listen(ctx, nil, "tcp", ":15008"); err == nil {
		ln.Close()
		t.Fatal("plain listener bound 15008 next to ztunnel's")
	} else if !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("plain listen: %v", err)
	}
	// The kernel spreads connections over both groups' members by hash;
	// 64 connections all landing on one side would be a 2^-63 fluke.
	var toOld, toNew int
	for range 64 {
		dialFrom(t, ns, "127.0.0.1:15008")
		select {
		case a := <-rOld.ch:
			a.c.Close()
			toOld++
		case a := <-rNew.ch:
			a.c.Close()
			toNew++
		}
	}
	if toOld == 0 || toNew == 0 {
		t.Fatalf("connections: %d to the old ztunnel, %d to the new; want both", toOld, toNew)
	}
	// The old one leaves; the new one takes every connection.
	if err := mOld.Del(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	for range 16 {
		dialFrom(t, ns, "127.0.0.1:15008")
		a := rNew.next(t)
		a.c.Close()
	}
	select {
	case a := <-rOld.ch:
		t.Fatalf("removed listener accepted %v", a.c.RemoteAddr())
	default:
	}
}

// TestDelClosesListeners removes a pod: its ports close, its netns handle
// is released, Done fires, and an established connection keeps working.
func TestDelClosesListeners(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	ns := createNetns(t, "del")
	r := newRecorder(t)
	m := newManager(t, r, Options{})
	nsFds := openNetnsFds(t)
	if err := m.Add(ctx, "u", podInfo("web"), openNetns(t, ns)); err != nil {
		t.Fatal(err)
	}
	pod, _ := m.Pod("u")
	client := dialFrom(t, ns, "127.0.0.1:15006")
	est := r.next(t)

	if err := m.Del(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pod.Done():
	default:
		t.Fatal("Done not closed by Del")
	}
	if len(m.Pods()) != 0 {
		t.Fatalf("Pods after Del = %v", m.Pods())
	}
	if pod.Netns().Fd() != -1 {
		t.Fatal("netns handle still open after Del")
	}
	if got := openNetnsFds(t); got != nsFds {
		t.Fatalf("netns descriptors: %d before Add, %d after Del", nsFds, got)
	}
	for _, port := range []string{"15001", "15006", "15008"} {
		c, err := ns.Dial(ctx, nil, "tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
			t.Fatalf("port %s still open after Del", port)
		}
		if !isRefused(err) {
			t.Fatalf("dial %s after Del: %v, want refused", port, err)
		}
	}
	// Draining is the proxy's business: the established connection lives.
	echo(t, client, est.c)
	if _, err := pod.Dial(ctx, "tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Dial of a removed pod: %v", err)
	}
	if err := m.Del(ctx, "u"); err != nil {
		t.Fatalf("second Del: %v", err)
	}
}

// TestReAdd: the same netns keeps the listeners; another replaces them.
func TestReAdd(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	ns1, ns2 := createNetns(t, "readd1"), createNetns(t, "readd2")
	r := newRecorder(t)
	m := newManager(t, r, Options{})
	if err := m.Add(ctx, "u", podInfo("web"), openNetns(t, ns1)); err != nil {
		t.Fatal(err)
	}
	first, _ := m.Pod("u")
	if err := m.Add(ctx, "u", podInfo("web"), openNetns(t, ns1)); err != nil {
		t.Fatal(err)
	}
	if again, _ := m.Pod("u"); again != first {
		t.Fatal("re-add with the same netns replaced the pod")
	}
	dialFrom(t, ns1, "127.0.0.1:15001")
	if a := r.next(t); a.pod != first {
		t.Fatal("connection reached another pod")
	}

	if err := m.Add(ctx, "u", podInfo("web"), openNetns(t, ns2)); err != nil {
		t.Fatal(err)
	}
	second, _ := m.Pod("u")
	if second == first {
		t.Fatal("re-add with another netns kept the old pod")
	}
	select {
	case <-first.Done():
	default:
		t.Fatal("replaced pod not removed")
	}
	if _, err := ns1.Dial(ctx, nil, "tcp", "127.0.0.1:15001"); !isRefused(err) {
		t.Fatalf("old netns port after replacement: %v, want refused", err)
	}
	dialFrom(t, ns2, "127.0.0.1:15001")
	if a := r.next(t); a.pod != second {
		t.Fatal("connection in the new netns reached the old pod")
	}
}

// TestSnapshot drops the pods the agent's snapshot leaves out.
func TestSnapshot(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	r := newRecorder(t)
	m := newManager(t, r, Options{})
	nss := map[string]*netns.Handle{}
	for _, uid := range []string{"a", "b", "c"} {
		nss[uid] = createNetns(t, "snap"+uid)
		if err := m.Add(ctx, uid, podInfo(uid), openNetns(t, nss[uid])); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := m.Pod("b")
	if err := m.Keep(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := m.Snapshot(ctx, []string{"a", "c", "unknown"}); err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, p := range m.Pods() {
		uids = append(uids, p.UID())
	}
	if !slices.Equal(uids, []string{"a", "c"}) {
		t.Fatalf("Pods after snapshot = %v", uids)
	}
	<-b.Done()
	if _, err := nss["b"].Dial(ctx, nil, "tcp", "127.0.0.1:15008"); !isRefused(err) {
		t.Fatalf("dropped pod's port: %v, want refused", err)
	}
	if err := m.Keep(ctx, "b"); err == nil {
		t.Fatal("Keep of a dropped pod accepted")
	}
	dialFrom(t, nss["c"], "127.0.0.1:15008")
	if a := r.next(t); a.pod.UID() != "c" {
		t.Fatalf("connection reached %v", a.pod)
	}
}

// TestStopAccepting closes listeners but keeps pods dialable for draining.
func TestStopAccepting(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	ns := createNetns(t, "stop")
	r := newRecorder(t)
	m := newManager(t, r, Options{})
	if err := m.Add(ctx, "u", podInfo("web"), openNetns(t, ns)); err != nil {
		t.Fatal(err)
	}
	app, err := ns.Listen(ctx, nil, "tcp", "127.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if err := m.StopAccepting(); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Dial(ctx, nil, "tcp", "127.0.0.1:15006"); !isRefused(err) {
		t.Fatalf("port after StopAccepting: %v, want refused", err)
	}
	pod, _ := m.Pod("u")
	c, err := pod.Dial(ctx, "tcp", "127.0.0.1:8080")
	if err != nil {
		t.Fatalf("Dial while draining: %v", err)
	}
	c.Close()
	if err := m.Add(ctx, "v", podInfo("other"), openNetns(t, ns)); err == nil {
		t.Fatal("Add accepted after StopAccepting")
	}
}

// TestPodIPsAndDial wires two pods on a node: each Pod knows its IP, and
// Pod.Dial leaves with the source pod's IP and ztunnel's mark, reaching the
// destination pod's HBONE listener inside its netns.
func TestPodIPsAndDial(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	topo := newTopology(t)
	if _, err := topo.AddNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	srcPod, err := topo.AddPod(ctx, "n1", "src")
	if err != nil {
		t.Fatal(err)
	}
	dstPod, err := topo.AddPod(ctx, "n1", "dst")
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder(t)
	m := newManager(t, r, Options{})
	for uid, tp := range map[string]*netns.Pod{"src": srcPod, "dst": dstPod} {
		if err := m.Add(ctx, uid, podInfo(uid), openNetns(t, tp.NS())); err != nil {
			t.Fatal(err)
		}
		p, _ := m.Pod(uid)
		if got := p.IPs(); !slices.Equal(got, []netip.Addr{tp.IP()}) {
			t.Fatalf("pod %s IPs = %v, want [%v]", uid, got, tp.IP())
		}
	}
	src, _ := m.Pod("src")
	c, err := src.Dial(ctx, "tcp", netip.AddrPortFrom(dstPod.IP(), DefaultHBONEPort).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if mark := sockoptInt(t, c.(*net.TCPConn), unix.SOL_SOCKET, unix.SO_MARK); mark != 0x539 {
		t.Errorf("dialed socket mark %#x, want 0x539", mark)
	}
	a := r.next(t)
	if a.kind != InboundHBONE || a.pod.UID() != "dst" {
		t.Fatalf("connection reached %v of %v", a.kind, a.pod)
	}
	if from := a.c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(); from != srcPod.IP() {
		t.Fatalf("connection came from %v, want the source pod's %v", from, srcPod.IP())
	}
	echo(t, c, a.c)
}

func newTopology(t *testing.T) *netns.Topology {
	t.Helper()
	topo, err := netns.New(testContext(t), netns.Options{NamePrefix: "ztinpod"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("topology close: %v", err)
		}
	})
	return topo
}
