package netns

import (
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestListenInPodAcceptsDialFromOtherPod(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	topo := newTestTopology(t, ctx, Options{})
	addNode(t, ctx, topo, "a")
	addNode(t, ctx, topo, "b")
	server := addPod(t, ctx, topo, "a", "server")
	client := addPod(t, ctx, topo, "b", "client")

	// Bound to the wildcard address: only the namespace decides where it listens.
	ln, err := server.NS().Listen(ctx, nil, "tcp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if want, err := server.NS().Cookie(); err != nil || socketNetnsCookie(t, ln.(syscall.Conn)) != want {
		t.Errorf("listener not in the server pod's namespace (cookie %d, %v)", want, err)
	}

	accepted := make(chan net.Addr, 1)
	go func() {
		defer close(accepted)
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		accepted <- c.RemoteAddr()
		io.Copy(c, c) //nolint:errcheck // echo until the client closes
	}()

	dst := netip.AddrPortFrom(server.IP(), uint16(port)).String()
	conn, err := client.NS().Dialer(nil)(ctx, "tcp", dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hello" {
		t.Errorf("echo = %q, %v", buf, err)
	}
	conn.Close()
	remote := (<-accepted).(*net.TCPAddr)
	if got := remote.AddrPort().Addr().Unmap(); got != client.IP() {
		t.Errorf("connection came from %v, want the client pod's %v", got, client.IP())
	}

	// The host namespace has no such listener: the same dial fails there.
	if c, err := (&net.Dialer{}).DialContext(ctx, "tcp", dst); err == nil {
		c.Close()
		t.Errorf("dial %s from the host succeeded", dst)
	}
}

func TestListenPacketInNetns(t *testing.T) {
	requireRoot(t)
	ctx := testContext(t)
	h := createNetns(t, "udp")
	if err := setLinksUp(h, "lo"); err != nil {
		t.Fatal(err)
	}
	pc, err := h.ListenPacket(ctx, nil, "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	conn, err := h.Dial(ctx, nil, "udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	want, err := h.Cookie()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []syscall.Conn{pc.(syscall.Conn), conn.(syscall.Conn)} {
		if got := socketNetnsCookie(t, c); got != want {
			t.Errorf("socket in netns cookie %d, want %d", got, want)
		}
	}
	if _, err := conn.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, _, err := pc.ReadFrom(buf); err != nil || buf[0] != 'x' {
		t.Errorf("ReadFrom = %q, %v", buf, err)
	}
}

// socketNetnsCookie reports which namespace a socket belongs to.
func socketNetnsCookie(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cookie uint64
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return cookie
}

func TestCookie(t *testing.T) {
	requireRoot(t)
	a, b := createNetns(t, "cka"), createNetns(t, "ckb")
	ca, err := a.Cookie()
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.Cookie()
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Cookie()
	if err != nil {
		t.Fatal(err)
	}
	if ca == 0 || ca != again || ca == cb {
		t.Errorf("cookies a=%d a-again=%d b=%d: want non-zero, stable, distinct", ca, again, cb)
	}
}

func TestCheckLiteral(t *testing.T) {
	for _, tc := range []struct {
		network, address string
		ok               bool
	}{
		{"tcp", "10.0.0.1:80", true},
		{"tcp", ":0", true},
		{"tcp6", "[fe80::1%eth0]:80", true},
		{"udp", "[::1]:53", true},
		{"tcp", "localhost:80", false},
		{"tcp", "example.com:443", false},
		{"tcp", "10.0.0.1", false},
		{"ip4:icmp", "10.0.0.1", true},
		{"ip4:icmp", "host", false},
		{"unix", "/run/ambit/zds.sock", true},
		{"unixpacket", "@abstract", true},
	} {
		err := checkLiteral(tc.network, tc.address)
		if (err == nil) != tc.ok {
			t.Errorf("checkLiteral(%s, %s) = %v, want ok=%v", tc.network, tc.address, err, tc.ok)
		}
	}
}
