package zds

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/sys/unix"

	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

func TestSnapshotOnConnect(t *testing.T) {
	h := serve(t, Options{})
	ctx := t.Context()
	for _, uid := range []string{"b", "a"} {
		if err := h.Add(ctx, workload(t, uid)); err != nil {
			t.Fatalf("Add %s with no ztunnel: %v", uid, err)
		}
	}
	z := h.dial(t)
	z.hello()
	add := z.expectAdd("a")
	if info := add.GetWorkloadInfo(); info.GetName() != "pod-a" || info.GetNamespace() != "default" || info.GetServiceAccount() != "sa" {
		t.Errorf("workload info = %v", info)
	}
	z.ack("")
	z.expectAdd("b")
	z.ack("")
	if req := z.next(); req.GetSnapshotSent() == nil {
		t.Fatalf("got %v, want snapshot_sent", req)
	}
	z.ack("")
	if n := h.Connections(); n != 1 {
		t.Errorf("Connections() = %d, want 1", n)
	}
}

func TestAddBeforeServe(t *testing.T) {
	s, err := New(Options{Path: filepath.Join(t.TempDir(), "zds.sock")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(t.Context(), workload(t, "early")); err != nil {
		t.Fatalf("Add before Serve: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := async(func() error { return s.Serve(ctx) })
	<-s.Ready()
	z := dialZtunnel(t, s.path)
	if got := z.handshake(); !slices.Equal(got, []string{"early"}) {
		t.Errorf("snapshot = %v, want [early]", got)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// A reconnecting ztunnel gets the current set, not the events it missed.
func TestSnapshotAfterReconnect(t *testing.T) {
	h := serve(t, Options{})
	ctx := t.Context()
	if err := h.Add(ctx, workload(t, "a")); err != nil {
		t.Fatal(err)
	}
	z1 := h.dial(t)
	if got := z1.handshake(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first snapshot = %v", got)
	}
	// Live add and delete.
	added := async(func() error { return h.Add(ctx, workload(t, "b")) })
	z1.expectAdd("b")
	z1.ack("")
	if err := <-added; err != nil {
		t.Fatalf("Add b: %v", err)
	}
	deleted := async(func() error { return h.Del(ctx, "b") })
	z1.expectDel("b")
	z1.ack("")
	if err := <-deleted; err != nil {
		t.Fatalf("Del b: %v", err)
	}

	z1.close()
	// While ztunnel is away: c comes and goes, d comes, a goes.
	for _, step := range []func() error{
		func() error { return h.Add(ctx, workload(t, "c")) },
		func() error { return h.Del(ctx, "c") },
		func() error { return h.Add(ctx, workload(t, "d")) },
		func() error { return h.Del(ctx, "a") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	z2 := h.dial(t)
	if got := z2.handshake(); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("snapshot after reconnect = %v, want [d]", got)
	}
}

func TestAddsToNewestDelsToAll(t *testing.T) {
	h := serve(t, Options{})
	ctx := t.Context()
	if err := h.Add(ctx, workload(t, "a")); err != nil {
		t.Fatal(err)
	}
	oldZ := h.dial(t)
	oldZ.handshake()
	newZ := h.dial(t)
	if got := newZ.handshake(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("new ztunnel's snapshot = %v", got)
	}
	if n := h.Connections(); n != 2 {
		t.Fatalf("Connections() = %d, want 2", n)
	}

	added := async(func() error { return h.Add(ctx, workload(t, "x")) })
	newZ.expectAdd("x")
	newZ.ack("")
	if err := <-added; err != nil {
		t.Fatal(err)
	}

	deleted := async(func() error { return h.Del(ctx, "x") })
	// The old ztunnel's next request is this del: the add went elsewhere.
	oldZ.expectDel("x")
	oldZ.ack("")
	newZ.expectDel("x")
	newZ.ack("")
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}

	// One rejection among several acks is reported.
	deleted = async(func() error { return h.Del(ctx, "y") })
	oldZ.expectDel("y")
	oldZ.ack("no such workload")
	newZ.expectDel("y")
	newZ.ack("")
	var ackErr *AckError
	if err := <-deleted; !errors.As(err, &ackErr) || ackErr.Op != "del" || ackErr.UID != "y" || ackErr.Msg != "no such workload" {
		t.Fatalf("Del y = %v, want the old ztunnel's rejection", err)
	}
}

// When the newest ztunnel goes away, the one before it takes over the
// pending add (its caller gets that ack) and the adds it missed.
func TestTakeoverWhenNewestGoes(t *testing.T) {
	h := serve(t, Options{})
	ctx := t.Context()
	oldZ := h.dial(t)
	oldZ.handshake()
	newZ := h.dial(t)
	newZ.handshake()

	added := async(func() error { return h.Add(ctx, workload(t, "x")) })
	newZ.expectAdd("x")
	newZ.ack("")
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	pending := async(func() error { return h.Add(ctx, workload(t, "y")) })
	newZ.expectAdd("y")
	newZ.close() // dies without acking y

	oldZ.expectAdd("y")
	oldZ.ack("netns busy")
	var ackErr *AckError
	if err := <-pending; !errors.As(err, &ackErr) || ackErr.UID != "y" {
		t.Fatalf("Add y = %v, want the old ztunnel's rejection", err)
	}
	oldZ.expectAdd("x")
	oldZ.ack("")
	if n := h.Connections(); n != 1 {
		t.Errorf("Connections() = %d, want 1", n)
	}
	if !strings.Contains(h.logs.String(), "takes over adds") {
		t.Errorf("takeover not logged:\n%s", h.logs)
	}
}

func TestAckErrorPropagated(t *testing.T) {
	h := serve(t, Options{})
	ctx := t.Context()
	z := h.dial(t)
	z.handshake()
	added := async(func() error { return h.Add(ctx, workload(t, "p")) })
	z.expectAdd("p")
	z.ack("cannot enter netns")
	err := <-added
	var ackErr *AckError
	if !errors.As(err, &ackErr) || ackErr.Op != "add" || ackErr.UID != "p" || ackErr.Msg != "cannot enter netns" {
		t.Fatalf("Add = %v, want an AckError", err)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "ztunnel rejected request") || !strings.Contains(logs, "cannot enter netns") {
		t.Errorf("rejection not logged:\n%s", logs)
	}
	// The connection stays usable.
	added = async(func() error { return h.Add(ctx, workload(t, "q")) })
	z.expectAdd("q")
	z.ack("")
	if err := <-added; err != nil {
		t.Fatal(err)
	}
}

func TestAddCancelled(t *testing.T) {
	h := serve(t, Options{})
	z := h.dial(t)
	z.handshake()
	ctx, cancel := context.WithCancel(t.Context())
	added := async(func() error { return h.Add(ctx, workload(t, "slow")) })
	z.expectAdd("slow")
	cancel()
	if err := <-added; !errors.Is(err, context.Canceled) {
		t.Fatalf("Add = %v, want context.Canceled", err)
	}
	z.ack("") // the late ack is still consumed in order
	deleted := async(func() error { return h.Del(t.Context(), "slow") })
	z.expectDel("slow")
	z.ack("")
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
}

// pipeFD returns the write end of a pipe to send as a stray descriptor,
// and a function that reports whether every copy of it is closed.
func pipeFD(t *testing.T) (int, func() bool) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	fd, err := unix.Dup(int(w.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	return fd, func() bool {
		// Only a safety net: the server closes fds before the connection.
		r.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := r.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}
}

// sendWithStrayFD sends b with a pipe's write end attached, keeping no
// copy of it, and returns a check that every copy is closed.
func (z *fakeZtunnel) sendWithStrayFD(b []byte) (allClosed func() bool) {
	z.t.Helper()
	fd, allClosed := pipeFD(z.t)
	z.sendRaw(b, unix.UnixRights(fd))
	unix.Close(fd) // the message in flight holds its own reference
	return allClosed
}

func TestHelloRejected(t *testing.T) {
	fitting := append([]byte{0x08, 0x01, 0x7a, 60}, make([]byte, 60)...) // V1 + unknown field 15: 64 bytes
	cases := []struct {
		name    string
		msg     []byte
		withFD  bool
		reason  string
		allowed bool
	}{
		{name: "version 2", msg: []byte{0x08, 0x02}, reason: "unsupported ZDS version 2 in ZdsHello (want V1)"},
		{name: "version NOT_USED", msg: []byte{0x08, 0x00}, reason: "unsupported ZDS version NOT_USED"},
		{name: "no version", msg: []byte{0x7a, 0x00}, reason: "unsupported ZDS version NOT_USED"},
		{name: "garbage", msg: []byte{0xff, 0xff, 0xff}, reason: "malformed message: ZdsHello"},
		{name: "truncated varint", msg: []byte{0x08, 0x80}, reason: "malformed message: ZdsHello"},
		{name: "oversized", msg: make([]byte, 1000), reason: "oversized message: more than 64 bytes"},
		{name: "one byte over", msg: append(slices.Clone(fitting), 0), reason: "oversized message: more than 64 bytes"},
		{name: "with fd", msg: []byte{0x08, 0x01}, withFD: true, reason: "unexpected control message: SCM_RIGHTS with 1 fd(s), closed"},
		{name: "exactly the limit", msg: fitting, allowed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := serve(t, Options{MaxMessageBytes: 64})
			z := h.dial(t)
			allClosed := func() bool { return true }
			if tc.withFD {
				allClosed = z.sendWithStrayFD(tc.msg)
			} else {
				z.sendRaw(tc.msg, nil)
			}
			if tc.allowed {
				if req := z.next(); req.GetSnapshotSent() == nil {
					t.Fatalf("got %v, want snapshot_sent", req)
				}
				return
			}
			z.expectEOF()
			if logs := h.logs.String(); !strings.Contains(logs, tc.reason) {
				t.Errorf("log lacks %q:\n%s", tc.reason, logs)
			}
			if !allClosed() {
				t.Error("the descriptor sent with the message was not closed")
			}
		})
	}
}

func TestHelloTimeout(t *testing.T) {
	h := serve(t, Options{AckTimeout: 50 * time.Millisecond})
	z := h.dial(t)
	z.expectEOF()
	if logs := h.logs.String(); !strings.Contains(logs, "ack timeout: no ZdsHello within 50ms") {
		t.Errorf("reason not logged:\n%s", logs)
	}
}

func TestResponseRejected(t *testing.T) {
	cases := []struct {
		name   string
		msg    []byte
		withFD bool
		reason string
	}{
		{name: "garbage", msg: []byte{0xff, 0x01}, reason: "malformed message: WorkloadResponse"},
		{name: "no ack", msg: []byte{0x10, 0x01}, reason: "malformed message: WorkloadResponse without ack"},
		{name: "invalid utf-8 error", msg: []byte{0x0a, 0x03, 0x0a, 0x01, 0xff}, reason: "malformed message: WorkloadResponse"},
		{name: "ack length past end", msg: []byte{0x0a, 0x05, 0x0a}, reason: "malformed message: WorkloadResponse"},
		{name: "oversized", msg: make([]byte, 200), reason: "oversized message: more than 64 bytes"},
		{name: "with fd", msg: []byte{0x0a, 0x00}, withFD: true, reason: "unexpected control message: SCM_RIGHTS with 1 fd(s), closed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := serve(t, Options{MaxMessageBytes: 64})
			if err := h.Add(t.Context(), workload(t, "a")); err != nil {
				t.Fatal(err)
			}
			z := h.dial(t)
			z.hello()
			z.expectAdd("a")
			allClosed := func() bool { return true }
			if tc.withFD {
				allClosed = z.sendWithStrayFD(tc.msg)
			} else {
				z.sendRaw(tc.msg, nil)
			}
			z.expectEOF()
			if logs := h.logs.String(); !strings.Contains(logs, tc.reason) {
				t.Errorf("log lacks %q:\n%s", tc.reason, logs)
			}
			if !allClosed() {
				t.Error("the descriptor sent with the message was not closed")
			}
		})
	}
}

func TestUnsolicitedResponse(t *testing.T) {
	h := serve(t, Options{})
	z := h.dial(t)
	z.handshake()
	z.ack("")
	z.expectEOF()
	if logs := h.logs.String(); !strings.Contains(logs, "unsolicited response: ack while no request was in flight") {
		t.Errorf("reason not logged:\n%s", logs)
	}
}

func TestAckTimeoutClosesConnection(t *testing.T) {
	h := serve(t, Options{AckTimeout: 100 * time.Millisecond})
	ctx := t.Context()
	if err := h.Add(ctx, workload(t, "a")); err != nil {
		t.Fatal(err)
	}
	z := h.dial(t)
	z.hello()
	z.expectAdd("a") // and never ack
	z.expectEOF()
	if logs := h.logs.String(); !strings.Contains(logs, `ack timeout: no answer to add of \"a\" within 100ms`) {
		t.Errorf("reason not logged:\n%s", logs)
	}
	// An add to a connection that is gone settles as "no ztunnel": nil,
	// and the connection is no longer counted once it has.
	if err := h.Add(ctx, workload(t, "b")); err != nil {
		t.Fatal(err)
	}
	if n := h.Connections(); n != 0 {
		t.Errorf("Connections() = %d, want 0", n)
	}
}

func TestPendingAddWithoutTakeover(t *testing.T) {
	h := serve(t, Options{})
	z := h.dial(t)
	z.handshake()
	added := async(func() error { return h.Add(t.Context(), workload(t, "a")) })
	z.expectAdd("a")
	z.close()
	if err := <-added; err != nil {
		t.Fatalf("Add = %v, want nil (a is in the next snapshot)", err)
	}
	z2 := h.dial(t)
	if got := z2.handshake(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("snapshot = %v", got)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestShutdown(t *testing.T) {
	ns := openNetns(t)
	h := serve(t, Options{})
	base := openFDs(t) // includes the listener
	ctx := t.Context()
	w := Workload{UID: "a", Info: &zdspb.WorkloadInfo{Name: "a", Namespace: "ns"}, Netns: fileFD{ns}}
	if err := h.Add(ctx, w); err != nil {
		t.Fatal(err)
	}
	w.UID = "b"
	if err := h.Add(ctx, w); err != nil {
		t.Fatal(err)
	}
	z := h.dial(t)
	z.handshake()
	pending := async(func() error { return h.Del(ctx, "a") })
	z.expectDel("a") // never acked
	h.stop(t)
	if err := <-pending; !errors.Is(err, ErrServerClosed) {
		t.Errorf("pending Del = %v, want ErrServerClosed", err)
	}
	z.expectEOF()
	z.close()
	if _, err := os.Lstat(h.path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket still there after Serve returned: %v", err)
	}
	if err := h.Add(ctx, w); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Add after shutdown = %v", err)
	}
	if err := h.Del(ctx, "b"); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Del after shutdown = %v", err)
	}
	if err := h.Serve(ctx); !errors.Is(err, ErrServerClosed) {
		t.Errorf("second Serve = %v", err)
	}
	// The caller's descriptor is untouched; the server's duplicates and
	// its listener are gone.
	if _, err := ns.Stat(); err != nil {
		t.Errorf("caller's netns file: %v", err)
	}
	if got := openFDs(t); got != base-1 {
		t.Errorf("%d fds open after shutdown, want %d", got, base-1)
	}
}

func TestSocketFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "zds.sock")
	start := func() (stop func() error, err error) {
		s, err := New(Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		errc := async(func() error { return s.Serve(ctx) })
		select {
		case <-s.Ready():
			return func() error { cancel(); return <-errc }, nil
		case err := <-errc:
			cancel()
			return nil, err
		}
	}

	stop, err := start()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want socket 0600", fi.Mode())
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("created dir: %v, %v; want 0700", di.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("dir holds %d entries, want only the socket", len(ents))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A stale socket, left by a crashed agent, is replaced.
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	stop, err = start()
	if err != nil {
		t.Fatalf("Serve over a stale socket: %v", err)
	}
	dialZtunnel(t, path).handshake()
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Anything else is left alone.
	if err := os.WriteFile(path, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := start(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Serve over a regular file = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep" {
		t.Error("regular file was changed")
	}
}

func TestNewValidates(t *testing.T) {
	for _, opts := range []Options{
		{},
		{Path: "/" + strings.Repeat("x", 120) + "/zds.sock"},
		{Path: "/tmp/zds.sock", AckTimeout: -1},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v) succeeded", opts)
		}
	}
}

type closedFD struct{}

func (closedFD) Fd() int { return -1 }

func TestAddValidates(t *testing.T) {
	s, err := New(Options{Path: filepath.Join(t.TempDir(), "zds.sock")})
	if err != nil {
		t.Fatal(err)
	}
	regular, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()
	mnt, err := os.Open("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	defer mnt.Close()
	good := workload(t, "a")
	cases := map[string]struct {
		mod  func(w *Workload)
		want string
	}{
		"empty uid":     {func(w *Workload) { w.UID = "" }, "empty UID"},
		"no info":       {func(w *Workload) { w.Info = nil }, "workload info"},
		"no namespace":  {func(w *Workload) { w.Info = &zdspb.WorkloadInfo{Name: "a"} }, "workload info"},
		"no netns":      {func(w *Workload) { w.Netns = nil }, "no netns"},
		"closed netns":  {func(w *Workload) { w.Netns = closedFD{} }, "closed"},
		"regular file":  {func(w *Workload) { w.Netns = fileFD{regular} }, "not a network namespace"},
		"mnt namespace": {func(w *Workload) { w.Netns = fileFD{mnt} }, "not a network namespace"},
	}
	for name, tc := range cases {
		w := good
		tc.mod(&w)
		if err := s.Add(t.Context(), w); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Add = %v, want %q", name, err, tc.want)
		}
	}
	if err := s.Del(t.Context(), ""); err == nil {
		t.Error("Del of empty UID succeeded")
	}
}

// The info is copied: changing the caller's message later does not race
// with or change what is sent.
func TestAddCopiesInfo(t *testing.T) {
	h := serve(t, Options{})
	w := workload(t, "a")
	if err := h.Add(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	w.Info.Name = "changed"
	z := h.dial(t)
	z.hello()
	if got := z.expectAdd("a").GetWorkloadInfo().GetName(); got != "pod-a" {
		t.Errorf("sent name %q", got)
	}
}

// Concurrent Adds and Dels leave a connected ztunnel, which applies the
// requests in the order it gets them, with exactly the server's set.
func TestConcurrentChangesConverge(t *testing.T) {
	h := serve(t, Options{})
	ctx := t.Context()
	z := h.dial(t)
	z.handshake()

	state := map[string]bool{}
	zdone := make(chan struct{})
	go func() {
		defer close(zdone)
		for {
			req, fds, err := z.recv()
			for _, fd := range fds {
				unix.Close(fd)
			}
			if err != nil {
				return
			}
			switch {
			case req.GetAdd() != nil:
				state[req.GetAdd().GetUid()] = true
			case req.GetDel() != nil:
				delete(state, req.GetDel().GetUid())
			}
			if err := sendmsg(z.fd, []byte{0x0a, 0x00}, nil); err != nil {
				return
			}
		}
	}()

	const workers, perWorker = 8, 30
	uidOf := func(i, j int) string { return strconv.Itoa(i) + "-" + strconv.Itoa(j%5) }
	isDel := func(j int) bool { return j%3 == 2 }
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for j := range perWorker {
				var err error
				if isDel(j) {
					err = h.Del(ctx, uidOf(i, j))
				} else {
					err = h.Add(ctx, workload(t, uidOf(i, j)))
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// Each worker changes its own uids in order, so the last change wins.
	want := map[string]bool{}
	for i := range workers {
		for j := range perWorker {
			want[uidOf(i, j)] = !isDel(j)
		}
	}
	var wantList []string
	for uid, in := range want {
		if in {
			wantList = append(wantList, uid)
		}
	}
	// A second ztunnel's snapshot is the set; take it before stopping the
	// first, whose reader owns z.
	z2 := h.dial(t)
	snap := z2.handshake()
	h.stop(t)
	<-zdone
	var got []string
	for uid := range state {
		got = append(got, uid)
	}
	if !slices.Equal(sorted(got), sorted(wantList)) {
		t.Errorf("ztunnel state = %v, want %v", sorted(got), sorted(wantList))
	}
	if !slices.Equal(sorted(snap), sorted(wantList)) {
		t.Errorf("snapshot = %v, want %v", sorted(snap), sorted(wantList))
	}
}

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	h := serve(t, Options{MeterProvider: mp})
	ctx := t.Context()
	if err := h.Add(ctx, workload(t, "a")); err != nil {
		t.Fatal(err)
	}
	z := h.dial(t)
	z.handshake()
	added := async(func() error { return h.Add(ctx, workload(t, "b")) })
	z.expectAdd("b")
	z.ack("nope")
	if err := <-added; err == nil {
		t.Fatal("want ack error")
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, p := range d.DataPoints {
					key := m.Name
					if v, ok := p.Attributes.Value(attribute.Key("type")); ok {
						key += "{" + v.AsString() + "}"
					}
					sums[key] += p.Value
				}
			}
		}
	}
	want := map[string]int64{
		MetricConnections:                      1,
		MetricMessagesSent + "{add}":           2,
		MetricMessagesSent + "{snapshot_sent}": 1,
		MetricAckErrors + "{add}":              1,
	}
	for k, v := range want {
		if sums[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, sums[k], v, sums)
		}
	}
}
