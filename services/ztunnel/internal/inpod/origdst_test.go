package inpod

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ambitmesh/ambit/pkg/netns"
)

// TestOriginalDst installs Istio's outbound capture rule in a pod netns:
// an app's connection is redirected to 15001 and OriginalDst recovers
// where it was going, while ztunnel's marked Pod.Dial to the same place is
// left alone and reaches the destination.
func TestOriginalDst(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables")
	}
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
	dst := netip.AddrPortFrom(dstPod.IP(), 8080)
	out, err := srcPod.NS().CombinedOutput(ctx, "iptables", "-w", "-t", "nat", "-A", "OUTPUT",
		"-p", "tcp", "-d", dst.Addr().String(), "--dport", strconv.Itoa(int(dst.Port())),
		"-m", "mark", "!", "--mark", "0x539/0xfff", "-j", "REDIRECT", "--to-ports", strconv.Itoa(DefaultOutboundPort))
	if err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	// The app behind dst, in its own netns.
	app, err := dstPod.NS().Listen(ctx, nil, "tcp", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()

	r := newRecorder(t)
	m := newManager(t, r, Options{})
	if err := m.Add(ctx, "src", podInfo("src"), openNetns(t, srcPod.NS())); err != nil {
		t.Fatal(err)
	}

	// The app in src connects to dst: captured.
	c := dialFrom(t, srcPod.NS(), dst.String())
	a := r.next(t)
	if a.kind != Outbound || a.pod.UID() != "src" {
		t.Fatalf("captured connection reached %v of %v", a.kind, a.pod)
	}
	got, err := netns.OriginalDst(a.c)
	if err != nil {
		t.Fatal(err)
	}
	if got != dst {
		t.Fatalf("OriginalDst = %v, want %v", got, dst)
	}
	echo(t, c, a.c)

	// ztunnel dials the same destination from the pod: not captured.
	zc, err := a.pod.Dial(ctx, "tcp", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	defer zc.Close()
	app.(*net.TCPListener).SetDeadline(time.Now().Add(ioTimeout))
	ac, err := app.Accept()
	if err != nil {
		t.Fatalf("app accept (was the marked dial captured?): %v", err)
	}
	defer ac.Close()
	if from := ac.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(); from != srcPod.IP() {
		t.Fatalf("app saw %v, want the source pod's %v", from, srcPod.IP())
	}
	echo(t, zc, ac)
	select {
	case a := <-r.ch:
		t.Fatalf("marked dial was captured by %v", a.kind)
	default:
	}

	// Not redirected at all: no conntrack NAT entry in dst's netns.
	if _, err := netns.OriginalDst(ac.(*net.TCPConn)); err != nil && !errors.Is(err, unix.ENOENT) {
		t.Fatalf("OriginalDst of an unredirected connection: %v", err)
	}
}
