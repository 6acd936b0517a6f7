package zds

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

// fakeZtunnel is the test's ztunnel: a raw SOCK_SEQPACKET client that
// reads requests with recvmsg and answers them by hand.
type fakeZtunnel struct {
	t  *testing.T
	fd int
}

// dialZtunnel connects to the server at path. SO_RCVTIMEO only keeps a
// broken test from hanging; nothing waits for it to pass.
func dialZtunnel(t *testing.T, path string) *fakeZtunnel {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		t.Fatalf("connect %s: %v", path, err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 20}); err != nil {
		t.Fatalf("SO_RCVTIMEO: %v", err)
	}
	z := &fakeZtunnel{t: t, fd: fd}
	t.Cleanup(z.close)
	return z
}

func (z *fakeZtunnel) close() {
	if z.fd >= 0 {
		unix.Close(z.fd)
		z.fd = -1
	}
}

func (z *fakeZtunnel) sendRaw(b, oob []byte) {
	z.t.Helper()
	if err := sendmsg(z.fd, b, oob); err != nil {
		z.t.Fatalf("sendmsg: %v", err)
	}
}

func sendmsg(fd int, b, oob []byte) error {
	for {
		if err := unix.Sendmsg(fd, b, oob, nil, 0); err != unix.EINTR {
			return err
		}
	}
}

func (z *fakeZtunnel) send(m proto.Message) {
	z.t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		z.t.Fatal(err)
	}
	z.sendRaw(b, nil)
}

func (z *fakeZtunnel) hello() {
	z.t.Helper()
	z.send(&zdspb.ZdsHello{Version: zdspb.Version_V1})
}

func (z *fakeZtunnel) ack(msg string) {
	z.t.Helper()
	z.send(&zdspb.WorkloadResponse{Payload: &zdspb.WorkloadResponse_Ack{Ack: &zdspb.Ack{Error: msg}}})
}

// recv reads one request and the descriptors that came with it; io.EOF
// once the server closed the connection.
func (z *fakeZtunnel) recv() (*zdspb.WorkloadRequest, []int, error) {
	z.t.Helper()
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn, flags int
	var err error
	for {
		// With SO_RCVTIMEO set, signals (the runtime's preemption) make
		// recvmsg fail with EINTR instead of restarting.
		n, oobn, flags, _, err = unix.Recvmsg(z.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, nil, err
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			z.t.Fatalf("parse control message: %v", err)
		}
		for i := range msgs {
			got, err := unix.ParseUnixRights(&msgs[i])
			if err != nil {
				z.t.Fatalf("parse rights: %v", err)
			}
			fds = append(fds, got...)
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		z.t.Fatalf("request truncated (flags %#x)", flags)
	}
	if n == 0 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, nil, io.EOF
	}
	req := &zdspb.WorkloadRequest{}
	if err := proto.Unmarshal(buf[:n], req); err != nil {
		z.t.Fatalf("unmarshal request: %v", err)
	}
	return req, fds, nil
}

// next reads one request, checks that an add carries exactly one netns fd
// (this process's own, which the tests enroll) and nothing else carries
// any, and closes the fds.
func (z *fakeZtunnel) next() *zdspb.WorkloadRequest {
	z.t.Helper()
	req, fds, err := z.recv()
	if err != nil {
		z.t.Fatalf("recv request: %v", err)
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if req.GetAdd() == nil {
		if len(fds) != 0 {
			z.t.Fatalf("%v came with %d fds", req, len(fds))
		}
		return req
	}
	if len(fds) != 1 {
		z.t.Fatalf("add %s came with %d fds, want 1", req.GetAdd().GetUid(), len(fds))
	}
	assertSelfNetns(z.t, fds[0])
	if info := req.GetAdd().GetWorkloadInfo(); info.GetName() == "" || info.GetNamespace() == "" {
		z.t.Fatalf("add %s without workload info: %v", req.GetAdd().GetUid(), info)
	}
	return req
}

func (z *fakeZtunnel) expectAdd(uid string) *zdspb.AddWorkload {
	z.t.Helper()
	req := z.next()
	if req.GetAdd().GetUid() != uid {
		z.t.Fatalf("got %v, want add %s", req, uid)
	}
	return req.GetAdd()
}

func (z *fakeZtunnel) expectDel(uid string) {
	z.t.Helper()
	req := z.next()
	if req.GetDel() == nil || req.GetDel().GetUid() != uid {
		z.t.Fatalf("got %v, want del %s", req, uid)
	}
}

func (z *fakeZtunnel) expectEOF() {
	z.t.Helper()
	req, fds, err := z.recv()
	for _, fd := range fds {
		unix.Close(fd)
	}
	if !errors.Is(err, io.EOF) {
		z.t.Fatalf("got %v, %v; want the server to close the connection", req, err)
	}
}

// handshake says hello, acks the snapshot and returns its uids in order.
func (z *fakeZtunnel) handshake() []string {
	z.t.Helper()
	z.hello()
	var uids []string
	for {
		req := z.next()
		z.ack("")
		switch {
		case req.GetAdd() != nil:
			uids = append(uids, req.GetAdd().GetUid())
		case req.GetSnapshotSent() != nil:
			return uids
		default:
			z.t.Fatalf("unexpected %v in snapshot", req)
		}
	}
}

// assertSelfNetns checks that fd is the network namespace of this process.
func assertSelfNetns(t *testing.T, fd int) {
	t.Helper()
	var got, want unix.Stat_t
	if err := unix.Fstat(fd, &got); err != nil {
		t.Fatalf("fstat received fd: %v", err)
	}
	if err := unix.Stat("/proc/self/ns/net", &want); err != nil {
		t.Fatal(err)
	}
	if got.Dev != want.Dev || got.Ino != want.Ino {
		t.Fatalf("received fd is inode %d:%d, want the netns %d:%d", got.Dev, got.Ino, want.Dev, want.Ino)
	}
}

// fileFD adapts an *os.File to FD.
type fileFD struct{ f *os.File }

func (x fileFD) Fd() int { return int(x.f.Fd()) }

func openNetns(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func workload(t *testing.T, uid string) Workload {
	return Workload{
		UID:   uid,
		Info:  &zdspb.WorkloadInfo{Name: "pod-" + uid, Namespace: "default", ServiceAccount: "sa"},
		Netns: fileFD{openNetns(t)},
	}
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

type harness struct {
	*Server
	path   string
	logs   *syncBuffer
	cancel context.CancelFunc
	errc   chan error
}

// serve starts a server on a fresh socket and stops it at cleanup.
func serve(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{path: filepath.Join(t.TempDir(), "run", "zds.sock"), logs: &syncBuffer{}, errc: make(chan error, 1)}
	opts.Path = h.path
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Server = s
	var ctx context.Context
	ctx, h.cancel = context.WithCancel(context.Background())
	go func() { h.errc <- s.Serve(ctx) }()
	select {
	case <-s.Ready():
	case err := <-h.errc:
		t.Fatalf("Serve: %v", err)
	}
	t.Cleanup(func() { h.stop(t) })
	return h
}

// stop cancels Serve and waits for it; calling it twice is fine.
func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	if h.errc == nil {
		return
	}
	if err := <-h.errc; err != nil {
		t.Errorf("Serve: %v", err)
	}
	h.errc = nil
}

func (h *harness) dial(t *testing.T) *fakeZtunnel { return dialZtunnel(t, h.path) }

// async runs fn in a goroutine and returns its result channel.
func async(fn func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- fn() }()
	return c
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
