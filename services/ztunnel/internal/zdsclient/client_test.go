package zdsclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/ambitmesh/ambit/pkg/netns"
	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

// ioTimeout keeps a broken test from hanging; nothing waits for it to pass.
const ioTimeout = 20 * time.Second

// fakeAgent is the test's CNI agent: a SOCK_SEQPACKET listener that sends
// requests by hand and reads the client's acks.
type fakeAgent struct {
	t    *testing.T
	path string
	ln   *net.UnixListener
}

func startAgent(t *testing.T, path string) *fakeAgent {
	t.Helper()
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	a := &fakeAgent{t: t, path: path, ln: ln}
	t.Cleanup(a.stop)
	return a
}

// stop closes the listener and removes the socket, as an agent exiting.
func (a *fakeAgent) stop() { a.ln.Close() }

// accept waits for the client's next connection and its hello.
func (a *fakeAgent) accept() *agentConn {
	a.t.Helper()
	if err := a.ln.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		a.t.Fatal(err)
	}
	uc, err := a.ln.AcceptUnix()
	if err != nil {
		a.t.Fatalf("accept: %v", err)
	}
	c := &agentConn{t: a.t, uc: uc}
	a.t.Cleanup(c.close)
	b := c.read()
	h := &zdspb.ZdsHello{}
	if err := proto.Unmarshal(b, h); err != nil || h.GetVersion() != zdspb.Version_V1 {
		a.t.Fatalf("hello = %v, %v", h, err)
	}
	return c
}

type agentConn struct {
	t  *testing.T
	uc *net.UnixConn
}

func (c *agentConn) close() { c.uc.Close() }

func (c *agentConn) read() []byte {
	c.t.Helper()
	if err := c.uc.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, 64)
	n, oobn, _, _, err := c.uc.ReadMsgUnix(buf, oob)
	if err != nil {
		c.t.Fatalf("agent read: %v", err)
	}
	if oobn != 0 {
		c.t.Fatalf("client sent %d bytes of control data", oobn)
	}
	return buf[:n]
}

func (c *agentConn) sendRaw(b, oob []byte) {
	c.t.Helper()
	if err := c.uc.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		c.t.Fatal(err)
	}
	if _, _, err := c.uc.WriteMsgUnix(b, oob, nil); err != nil {
		c.t.Fatalf("agent write: %v", err)
	}
}

// request sends req with fds and returns the ack's error text.
func (c *agentConn) request(req *zdspb.WorkloadRequest, fds ...int) string {
	c.t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	c.sendRaw(marshal(c.t, req), oob)
	r := &zdspb.WorkloadResponse{}
	if err := proto.Unmarshal(c.read(), r); err != nil || r.GetAck() == nil {
		c.t.Fatalf("response to %v = %v, %v", req, r, err)
	}
	return r.GetAck().GetError()
}

func (c *agentConn) mustAck(req *zdspb.WorkloadRequest, fds ...int) {
	c.t.Helper()
	if msg := c.request(req, fds...); msg != "" {
		c.t.Fatalf("%v: ack error %q", req, msg)
	}
}

func (c *agentConn) add(uid string, fd int) {
	c.t.Helper()
	c.mustAck(addReq(uid, info("pod-"+uid)), fd)
}
func (c *agentConn) del(uid string)  { c.t.Helper(); c.mustAck(delReq(uid)) }
func (c *agentConn) keep(uid string) { c.t.Helper(); c.mustAck(keepReq(uid)) }
func (c *agentConn) snapshot()       { c.t.Helper(); c.mustAck(snapshotReq()) }

// expectClosed waits until the client closes the connection.
func (c *agentConn) expectClosed() {
	c.t.Helper()
	if err := c.uc.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		c.t.Fatal(err)
	}
	n, _, _, _, err := c.uc.ReadMsgUnix(make([]byte, 1024), nil)
	if !errors.Is(err, io.EOF) {
		c.t.Fatalf("read %d bytes, %v; want the client to close the connection", n, err)
	}
}

// fakeHandler records calls and owns the netns files it is given, as the
// in-pod manager does.
type fakeHandler struct {
	mu      sync.Mutex
	pods    map[string]*os.File
	calls   []string
	failAdd map[string]string
}

func newFakeHandler(t *testing.T) *fakeHandler {
	h := &fakeHandler{pods: make(map[string]*os.File), failAdd: make(map[string]string)}
	t.Cleanup(h.closeAll)
	return h
}

func (h *fakeHandler) Add(_ context.Context, uid string, info *zdspb.WorkloadInfo, f *os.File) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "add "+uid+" "+info.GetName())
	if msg, ok := h.failAdd[uid]; ok {
		f.Close()
		return errors.New(msg)
	}
	if old := h.pods[uid]; old != nil {
		old.Close()
	}
	h.pods[uid] = f
	return nil
}

func (h *fakeHandler) Del(_ context.Context, uid string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "del "+uid)
	if f := h.pods[uid]; f != nil {
		f.Close()
		delete(h.pods, uid)
	}
	return nil
}

func (h *fakeHandler) Keep(_ context.Context, uid string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "keep "+uid)
	if h.pods[uid] == nil {
		return fmt.Errorf("unknown pod %s", uid)
	}
	return nil
}

func (h *fakeHandler) Snapshot(_ context.Context, uids []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "snapshot "+strings.Join(uids, ","))
	for uid, f := range h.pods {
		if !slices.Contains(uids, uid) {
			f.Close()
			delete(h.pods, uid)
		}
	}
	return nil
}

func (h *fakeHandler) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for uid, f := range h.pods {
		f.Close()
		delete(h.pods, uid)
	}
}

func (h *fakeHandler) served() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(maps.Keys(h.pods))
}

// takeCalls returns the calls since the last takeCalls.
func (h *fakeHandler) takeCalls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.calls
	h.calls = nil
	return c
}

func (h *fakeHandler) file(uid string) *os.File {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pods[uid]
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// harness runs a Client against a socket path in a temp dir.
type harness struct {
	t       *testing.T
	path    string
	h       *fakeHandler
	c       *Client
	logs    *syncBuffer
	reader  *sdkmetric.ManualReader
	cancel  context.CancelFunc
	stopped chan error
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	hs := &harness{
		t:      t,
		path:   filepath.Join(t.TempDir(), "zds.sock"),
		h:      newFakeHandler(t),
		logs:   &syncBuffer{},
		reader: sdkmetric.NewManualReader(),
	}
	opts.Path = hs.path
	opts.Handler = hs.h
	opts.Logger = slog.New(slog.NewTextHandler(hs.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(hs.reader))
	if opts.RetryMax == 0 {
		opts.RetryMax = 20 * time.Millisecond
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs.c = c
	return hs
}

// start runs the client until stop or the end of the test.
func (hs *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	hs.cancel = cancel
	hs.stopped = make(chan error, 1)
	go func() { hs.stopped <- hs.c.Run(ctx) }()
	hs.t.Cleanup(hs.stop)
}

func (hs *harness) stop() {
	if hs.stopped == nil {
		return
	}
	hs.cancel()
	select {
	case err := <-hs.stopped:
		if err != nil {
			hs.t.Errorf("Run: %v", err)
		}
	case <-time.After(ioTimeout):
		hs.t.Fatal("Run did not return after cancel")
	}
	hs.stopped = nil
}

// counter sums a counter's points whose attributes include attrs.
func (hs *harness) counter(name string, attrs ...attribute.KeyValue) int64 {
	hs.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := hs.reader.Collect(context.Background(), &rm); err != nil {
		hs.t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				hs.t.Fatalf("%s is %T", name, m.Data)
			}
		points:
			for _, p := range sum.DataPoints {
				for _, a := range attrs {
					if v, ok := p.Attributes.Value(a.Key); !ok || v != a.Value {
						continue points
					}
				}
				n += p.Value
			}
		}
	}
	return n
}

// testNetns returns an open network namespace to hand over: a fresh named
// one when root, else this process's own.
func testNetns(t *testing.T) *os.File {
	t.Helper()
	path := "/proc/self/ns/net"
	if os.Geteuid() == 0 {
		var b [4]byte
		rand.Read(b[:])
		h, err := netns.Create("ambittest-" + hex.EncodeToString(b[:]) + "-zds")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			netns.Delete(h.Name()) //nolint:errcheck // best effort
			h.Close()
		})
		path = h.Path()
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func sameFile(t *testing.T, a, b *os.File) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Fstat(int(a.Fd()), &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstat(int(b.Fd()), &sb); err != nil {
		t.Fatal(err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// openFds counts this process's descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// checkNoFdLeak compares the descriptor count at the end of the test (after
// every cleanup registered later has run) with the count now.
func checkNoFdLeak(t *testing.T) {
	t.Helper()
	before := openFds(t)
	t.Cleanup(func() {
		if after := openFds(t); after != before {
			t.Errorf("open descriptors: %d before, %d after", before, after)
		}
	})
}

func wantCalls(t *testing.T, h *fakeHandler, want ...string) {
	t.Helper()
	if got := h.takeCalls(); !slices.Equal(got, want) {
		t.Fatalf("handler calls = %q, want %q", got, want)
	}
}

func wantServed(t *testing.T, h *fakeHandler, want ...string) {
	t.Helper()
	if got := h.served(); !slices.Equal(got, want) {
		t.Fatalf("served pods = %q, want %q", got, want)
	}
}

func TestAddDelSnapshot(t *testing.T) {
	nsA, nsB := testNetns(t), testNetns(t)
	checkNoFdLeak(t)
	hs := newHarness(t, Options{})
	agent := startAgent(t, hs.path)
	hs.start()
	c := agent.accept()

	select {
	case <-hs.c.Synced():
		t.Fatal("synced before any snapshot")
	default:
	}
	c.add("a", int(nsA.Fd()))
	c.add("b", int(nsB.Fd()))
	c.snapshot()
	<-hs.c.Synced()
	wantCalls(t, hs.h, "add a pod-a", "add b pod-b", "snapshot a,b")
	if !sameFile(t, hs.h.file("a"), nsA) || !sameFile(t, hs.h.file("b"), nsB) {
		t.Fatal("handler did not get the netns the agent sent")
	}

	c.del("a")
	c.add("c", int(nsA.Fd()))
	wantCalls(t, hs.h, "del a", "add c pod-c")
	wantServed(t, hs.h, "b", "c")

	// Istio's agent only sends keep during a snapshot.
	if msg := c.request(keepReq("b")); !strings.Contains(msg, "only valid before snapshot_sent") {
		t.Fatalf("keep after snapshot acked %q", msg)
	}
	if msg := c.request(snapshotReq()); !strings.Contains(msg, "already received") {
		t.Fatalf("second snapshot_sent acked %q", msg)
	}
	wantCalls(t, hs.h)
	if got := hs.counter(MetricRequests, attribute.String("type", "add"), attribute.String("result", "ok")); got != 3 {
		t.Errorf("%s{add,ok} = %d, want 3", MetricRequests, got)
	}
}

func TestAckCarriesErrors(t *testing.T) {
	ns := testNetns(t)
	checkNoFdLeak(t)
	hs := newHarness(t, Options{})
	hs.h.failAdd["bad"] = "no such netns"
	agent := startAgent(t, hs.path)
	hs.start()
	c := agent.accept()

	if msg := c.request(addReq("bad", info("bad")), int(ns.Fd())); !strings.Contains(msg, "no such netns") {
		t.Fatalf("failed add acked %q", msg)
	}
	// Without workload_info the handler is not called and the fd is closed.
	if msg := c.request(addReq("noinfo", nil), int(ns.Fd())); !strings.Contains(msg, "workload_info with name and namespace is required") {
		t.Fatalf("add without info acked %q", msg)
	}
	if msg := c.request(addReq("noname", &zdspb.WorkloadInfo{Namespace: "x"}), int(ns.Fd())); msg == "" {
		t.Fatal("add without name acked ok")
	}
	if msg := c.request(keepReq("unknown")); !strings.Contains(msg, "unknown pod unknown") {
		t.Fatalf("keep of unknown pod acked %q", msg)
	}
	c.snapshot()
	wantCalls(t, hs.h, "add bad bad", "keep unknown", "snapshot ")
	wantServed(t, hs.h)
	if got := hs.counter(MetricRequests, attribute.String("result", "error")); got != 4 {
		t.Errorf("%s{result=error} = %d, want 4", MetricRequests, got)
	}
	if !strings.Contains(hs.logs.String(), "no such netns") {
		t.Errorf("handler error not logged:\n%s", hs.logs)
	}
}

// TestReconnectReconciles restarts the agent: the client reconnects and the
// new snapshot, not an explicit delete, removes the pod that went away.
func TestReconnectReconciles(t *testing.T) {
	nsA, nsB, nsC := testNetns(t), testNetns(t), testNetns(t)
	checkNoFdLeak(t)
	hs := newHarness(t, Options{})
	agent := startAgent(t, hs.path)
	hs.start()

	c := agent.accept()
	c.add("a", int(nsA.Fd()))
	c.add("b", int(nsB.Fd()))
	c.add("c", int(nsC.Fd()))
	c.snapshot()
	wantServed(t, hs.h, "a", "b", "c")
	hs.h.takeCalls()

	// The agent restarts: its socket is removed and created again.
	c.close()
	agent.stop()
	agent = startAgent(t, hs.path)
	c = agent.accept()
	c.add("a", int(nsA.Fd()))
	c.keep("b")
	c.snapshot()
	wantCalls(t, hs.h, "add a pod-a", "keep b", "snapshot a,b")
	wantServed(t, hs.h, "a", "b")

	// Pods added after the snapshot are not part of it; a del during the
	// next snapshot removes the uid from the set.
	c.add("d", int(nsC.Fd()))
	c.close()
	c = agent.accept()
	c.add("a", int(nsA.Fd()))
	c.add("d", int(nsC.Fd()))
	c.del("d")
	c.snapshot()
	wantServed(t, hs.h, "a")
	if got := hs.counter(MetricConnectionCloses, attribute.String("reason", "peer_closed")); got < 2 {
		t.Errorf("%s{peer_closed} = %d, want at least 2", MetricConnectionCloses, got)
	}
}

// TestWaitsForAgent starts the client before the agent exists.
func TestWaitsForAgent(t *testing.T) {
	hs := newHarness(t, Options{RetryMax: 10 * time.Millisecond})
	hs.start()
	// The client is dialling a path that does not exist yet; the agent
	// appearing is all it needs.
	agent := startAgent(t, hs.path)
	c := agent.accept()
	c.snapshot()
	<-hs.c.Synced()
	hs.stop()
	c.expectClosed()
}

// TestBadInputClosesConnection sends what a broken or hostile agent might:
// each closes the connection with a logged reason, every descriptor that
// came with it is closed, and the client reconnects.
func TestBadInputClosesConnection(t *testing.T) {
	ns := testNetns(t)
	fd := int(ns.Fd())
	const maxMsg = 128
	okDel := delReq(strings.Repeat("u", maxMsg-4)) // exactly maxMsg bytes
	if n := len(marshal(t, okDel)); n != maxMsg {
		t.Fatalf("boundary message is %d bytes", n)
	}
	bigDel := marshal(t, delReq(strings.Repeat("u", maxMsg-3)))
	cases := []struct {
		name   string
		b      []byte
		oob    []byte
		reason string // logged
		label  string // metric reason
	}{
		{"garbage", []byte{0xff, 0xff, 0xff}, nil, "malformed message", "malformed"},
		{"unknown payload", []byte{0x22, 0x00}, nil, "without a known payload", "malformed"},
		{"add without fd", marshal(t, addReq("a", info("a"))), nil, "came with 0 descriptors", "malformed"},
		{"add with two fds", marshal(t, addReq("a", info("a"))), unix.UnixRights(fd, fd), "came with 2 descriptors", "malformed"},
		{"del with fd", marshal(t, delReq("a")), unix.UnixRights(fd), "came with 1 descriptors", "malformed"},
		// Go (like libc) sends a dummy byte with control data and no payload.
		{"fd without payload", nil, unix.UnixRights(fd), "cannot parse invalid wire-format data", "malformed"},
		{"oversized", bigDel, nil, "oversized message: more than 128 bytes", "oversized"},
		{"oversized with fd", append(bytes.Repeat([]byte{0}, 10*maxMsg), 1), unix.UnixRights(fd), "oversized message", "oversized"},
		{"too many fds", marshal(t, addReq("a", info("a"))), unix.UnixRights(slices.Repeat([]int{fd}, 20)...), "control data truncated", "control_message"},
	}
	checkNoFdLeak(t)
	hs := newHarness(t, Options{MaxMessageBytes: maxMsg})
	agent := startAgent(t, hs.path)
	hs.start()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := agent.accept()
			c.mustAck(okDel) // the boundary size is fine
			c.sendRaw(tc.b, tc.oob)
			c.expectClosed()
			c.close()
			// The log line is written before the client redials.
			c = agent.accept()
			c.close()
			if logs := hs.logs.String(); !strings.Contains(logs, tc.reason) {
				t.Fatalf("reason %q not logged:\n%s", tc.reason, logs)
			}
			if hs.counter(MetricConnectionCloses, attribute.String("reason", tc.label)) == 0 {
				t.Fatalf("no close counted with reason %s", tc.label)
			}
		})
	}
	hs.stop()
}

func TestOptions(t *testing.T) {
	h := newFakeHandler(t)
	for _, opts := range []Options{
		{Handler: h},
		{Path: "/x"},
		{Path: "/x", Handler: h, RetryMax: -1},
		{Path: "/x", Handler: h, MaxMessageBytes: -1},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v) accepted", opts)
		}
	}
	c, err := New(Options{Path: "/nonexistent/zds.sock", Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run with a done context = %v", err)
	}
	if err := c.Run(ctx); err == nil {
		t.Fatal("second Run accepted")
	}
}
