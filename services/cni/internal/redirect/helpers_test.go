package redirect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambitmesh/ambit/pkg/netns"
	"golang.org/x/sys/unix"
)

// iptablesCmd is the plain iptables binary the tests use to create drift
// and foreign rules, of the same (nft) backend as the defaults.
const iptablesCmd = "iptables-nft"

// requirePrivileged skips tests that need root and iptables.
func requirePrivileged(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and installs iptables rules in them")
	}
	o := IPTablesOptions{}.withDefaults()
	for _, bin := range []string{o.RestoreCmd, o.SaveCmd, iptablesCmd} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (apt-get install iptables): %v", bin, err)
		}
	}
}

// testContext bounds each test so a stuck command fails it instead of
// hanging the package.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// uniqueName returns a netns name no other test run uses.
func uniqueName(t *testing.T, what string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "ambittest-redir-" + hex.EncodeToString(b[:]) + "-" + what
}

// createNetns makes a bare namespace, removed at the end of the test even
// if it fails.
func createNetns(t *testing.T, what string) *netns.Handle {
	t.Helper()
	h, err := netns.Create(uniqueName(t, what))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(h.Name()); err != nil {
			t.Errorf("delete netns: %v", err)
		}
		h.Close()
	})
	return h
}

// saveIn returns iptables-save output of the namespace, comments dropped.
func saveIn(t *testing.T, h *netns.Handle) string {
	t.Helper()
	out, err := h.CombinedOutput(testContext(t), IPTablesOptions{}.withDefaults().SaveCmd)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "#") && l != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n") + "\n"
}

// iptablesIn runs iptables-nft inside the namespace.
func iptablesIn(t *testing.T, h *netns.Handle, args ...string) {
	t.Helper()
	if out, err := h.CombinedOutput(testContext(t), iptablesCmd, args...); err != nil {
		t.Fatalf("iptables %v: %v: %s", args, err, out)
	}
}

// markControl sets SO_MARK on a socket before it binds or connects, as
// ztunnel does for all its sockets.
func markControl(mark int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
		}); err != nil {
			return err
		}
		return serr
	}
}

// listen opens a TCP listener inside h on all addresses, marked if mark is
// non-zero, closed at the end of the test.
func listen(t *testing.T, h *netns.Handle, port int, mark int) *net.TCPListener {
	t.Helper()
	lc := &net.ListenConfig{}
	if mark != 0 {
		lc.Control = markControl(mark)
	}
	ln, err := h.Listen(testContext(t), lc, "tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// expectLands dials dst from inside from (with a socket marked if mark is
// non-zero), accepts on ln and checks that it is the same connection, that
// bytes flow both ways, and that its original destination is wantOrig.
// Pass an invalid wantOrig where the accepting netns may track no
// connections (no NAT there), so SO_ORIGINAL_DST has nothing to answer.
func expectLands(t *testing.T, what string, from *netns.Handle, mark int, dst netip.AddrPort, ln *net.TCPListener, wantOrig netip.AddrPort) *net.TCPConn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if mark != 0 {
		d.Control = markControl(mark)
	}
	c, err := from.Dial(testContext(t), d, "tcp4", dst.String())
	if err != nil {
		t.Fatalf("%s: dial %v: %v", what, dst, err)
	}
	t.Cleanup(func() { c.Close() })
	client := c.(*net.TCPConn)

	if err := ln.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	server, err := ln.AcceptTCP()
	if err != nil {
		t.Fatalf("%s: dialled %v, nothing arrived on %v: %v", what, dst, ln.Addr(), err)
	}
	t.Cleanup(func() { server.Close() })

	clientLocal := client.LocalAddr().(*net.TCPAddr).AddrPort()
	serverRemote := server.RemoteAddr().(*net.TCPAddr).AddrPort()
	if unmap(serverRemote) != unmap(clientLocal) {
		t.Fatalf("%s: listener %v accepted %v, not our client %v", what, ln.Addr(), serverRemote, clientLocal)
	}
	if wantOrig.IsValid() {
		got, err := netns.OriginalDst(server)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != wantOrig {
			t.Errorf("%s: original destination %v, want %v", what, got, wantOrig)
		}
	}
	exchange(t, what, client, server)
	return server
}

// exchange proves data and replies flow both ways on a connection.
func exchange(t *testing.T, what string, client, server *net.TCPConn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	client.SetDeadline(deadline)
	server.SetDeadline(deadline)
	for _, dir := range []struct{ w, r *net.TCPConn }{{client, server}, {server, client}} {
		if _, err := dir.w.Write([]byte("ping")); err != nil {
			t.Fatalf("%s: write: %v", what, err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(dir.r, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("%s: read %q: %v", what, buf, err)
		}
	}
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
