package inpod

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/ambitmesh/ambit/pkg/netns"
	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ioTimeout keeps a broken test from hanging; nothing waits for it to pass.
const ioTimeout = 20 * time.Second

// requireRoot skips tests that create namespaces, sockets with marks and
// iptables rules.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and sets SO_MARK")
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
	t.Cleanup(cancel)
	return ctx
}

// uniqueName returns a netns name no other test run uses.
func uniqueName(t *testing.T, what string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "ambittest-" + hex.EncodeToString(b[:]) + "-" + what
}

// createNetns makes a named namespace with loopback up, removed at the end
// of the test even if it fails.
func createNetns(t *testing.T, what string) *netns.Handle {
	t.Helper()
	h, err := netns.Create(uniqueName(t, what))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		netns.Delete(h.Name()) //nolint:errcheck // best effort
		h.Close()
	})
	nh, err := h.Netlink(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("loopback up: %v", err)
	}
	return h
}

// openNetns opens a new descriptor of h, as ZDS would hand over; Add owns it.
func openNetns(t *testing.T, h *netns.Handle) *os.File {
	t.Helper()
	f, err := os.Open(h.Path())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func podInfo(name string) *zdspb.WorkloadInfo {
	return &zdspb.WorkloadInfo{Name: name, Namespace: "ns1", ServiceAccount: "sa-" + name}
}

// accepted is one connection a handler received.
type accepted struct {
	kind Kind
	pod  *Pod
	c    *net.TCPConn
}

// recorder hands every accepted connection to the test, which closes it.
type recorder struct{ ch chan accepted }

func newRecorder(t *testing.T) *recorder {
	r := &recorder{ch: make(chan accepted, 256)}
	t.Cleanup(func() {
		for {
			select {
			case a := <-r.ch:
				a.c.Close()
			default:
				return
			}
		}
	})
	return r
}

func (r *recorder) handlers() Handlers {
	h := func(k Kind) func(*Pod, *net.TCPConn) {
		return func(p *Pod, c *net.TCPConn) { r.ch <- accepted{k, p, c} }
	}
	return Handlers{Outbound: h(Outbound), InboundPlaintext: h(InboundPlaintext), InboundHBONE: h(InboundHBONE)}
}

func (r *recorder) next(t *testing.T) accepted {
	t.Helper()
	select {
	case a := <-r.ch:
		return a
	case <-time.After(ioTimeout):
		t.Fatal("no connection reached a handler")
		return accepted{}
	}
}

// newManager returns a Manager closed at the end of the test.
func newManager(t *testing.T, r *recorder, opts Options) *Manager {
	t.Helper()
	opts.Handlers = r.handlers()
	opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// testWriter sends log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// dialFrom connects from inside h, without ztunnel's mark, as an app would.
func dialFrom(t *testing.T, h *netns.Handle, addr string) net.Conn {
	t.Helper()
	c, err := h.Dial(testContext(t), nil, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo checks that bytes flow both ways between a and b.
func echo(t *testing.T, a, b net.Conn) {
	t.Helper()
	for _, dir := range [][2]net.Conn{{a, b}, {b, a}} {
		msg := []byte("ping " + dir[0].LocalAddr().String())
		if _, err := dir[0].Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		dir[1].SetReadDeadline(time.Now().Add(ioTimeout))
		if _, err := io.ReadFull(dir[1], got); err != nil || string(got) != string(msg) {
			t.Fatalf("read %q, %v; want %q", got, err, msg)
		}
	}
}

func sockoptInt(t *testing.T, c syscall.Conn, level, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("getsockopt %d/%d: %v", level, opt, serr)
	}
	return v
}

func sockoptUint64(t *testing.T, c syscall.Conn, level, opt int) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v uint64
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptUint64(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("getsockopt %d/%d: %v", level, opt, serr)
	}
	return v
}

// openNetnsFds counts this process's descriptors that refer to namespaces.
func openNetnsFds(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		var fs unix.Statfs_t
		if unix.Statfs(filepath.Join("/proc/self/fd", fd.Name()), &fs) == nil && fs.Type == unix.NSFS_MAGIC {
			n++
		}
	}
	return n
}

func isRefused(err error) bool { return errors.Is(err, unix.ECONNREFUSED) }
