package zds

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

// Defaults for Options.
const (
	DefaultAckTimeout      = 5 * time.Second
	DefaultMaxMessageBytes = 64 << 10
)

// ErrServerClosed is returned by Add and Del once Serve has stopped, and
// by Serve when called again.
var ErrServerClosed = errors.New("zds: server closed")

// Workload is one enrolled pod as handed to ztunnel.
type Workload struct {
	// UID is the pod's metadata.uid, the key of ZDS messages.
	UID string
	// Info names the pod; name and namespace are required because
	// AddWorkload always carries workload_info (DESIGN §2).
	Info *zdspb.WorkloadInfo
	// Netns is the pod's network namespace. Add duplicates the descriptor;
	// the caller keeps ownership of Netns and may close it after Add.
	Netns FD
}

// Options configures a Server.
type Options struct {
	// Path of the unix socket ztunnel connects to. Required; a stale socket
	// there is replaced, anything else is an error.
	Path string
	// Logger receives connection events and every reason a connection was
	// closed; nil discards.
	Logger *slog.Logger
	// MeterProvider receives the metrics (Metric* names); nil is a no-op.
	MeterProvider metric.MeterProvider
	// AckTimeout bounds the wait for ztunnel's ack of each request, and for
	// its hello after connecting; the connection is closed when it passes.
	// Zero means DefaultAckTimeout.
	AckTimeout time.Duration
	// MaxMessageBytes is the largest message accepted from ztunnel; its
	// messages are tiny, so this only bounds hostile input. Zero means
	// DefaultMaxMessageBytes.
	MaxMessageBytes int
}

// Server is the agent's ZDS server. It holds the set of enrolled workloads
// and serves it to any number of ztunnel connections. Add and Del may be
// called before Serve (the set is then sent as the first snapshot) and
// concurrently from any goroutine.
type Server struct {
	path       string
	log        *slog.Logger
	m          *metrics
	ackTimeout time.Duration
	maxMsg     int
	ready      chan struct{}

	mu     sync.Mutex
	state  serverState
	set    map[string]*entry
	conns  []*conn            // past the hello, oldest first
	all    map[*conn]struct{} // every accepted connection, to close on shutdown
	nextID uint64
}

type serverState int

const (
	stateIdle serverState = iota
	stateServing
	stateClosed
)

// entry is one workload of the set; its pointer identifies one version of
// the workload, so a queued add can tell whether it is still current.
type entry struct {
	uid  string
	info *zdspb.WorkloadInfo
	ns   *nsRef
}

// tmpSuffixLen is the most listen adds to the directory for its temporary
// socket ("/.zds" + up to 10 random digits + "/s").
const tmpSuffixLen = len("/.zds4294967295/s")

// New validates opts and returns a Server that does not listen yet.
func New(opts Options) (*Server, error) {
	if opts.Path == "" {
		return nil, errors.New("zds: Options.Path is required")
	}
	maxPath := len(unix.RawSockaddrUnix{}.Path) - 1
	if len(filepath.Dir(opts.Path))+tmpSuffixLen > maxPath || len(opts.Path) > maxPath {
		return nil, fmt.Errorf("zds: socket path %q too long for a unix socket", opts.Path)
	}
	if opts.AckTimeout < 0 || opts.MaxMessageBytes < 0 {
		return nil, errors.New("zds: AckTimeout and MaxMessageBytes must not be negative")
	}
	if opts.AckTimeout == 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MeterProvider == nil {
		opts.MeterProvider = metricnoop.NewMeterProvider()
	}
	m, err := newMetrics(opts.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("zds: metrics: %w", err)
	}
	return &Server{
		path:       opts.Path,
		log:        opts.Logger,
		m:          m,
		ackTimeout: opts.AckTimeout,
		maxMsg:     opts.MaxMessageBytes,
		ready:      make(chan struct{}),
		set:        make(map[string]*entry),
		all:        make(map[*conn]struct{}),
	}, nil
}

// Ready is closed once Serve listens, for readiness checks.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Connections is the number of ztunnel connections past the hello.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Serve listens on Options.Path and serves ztunnel connections until ctx is
// done; then it closes every connection, releases the server's netns
// descriptors and removes the socket. A Server serves once.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.state != stateIdle {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.state = stateServing
	s.mu.Unlock()

	ln, sock, err := listen(s.path)
	if err != nil {
		s.shutdown()
		s.releaseSet()
		return fmt.Errorf("zds: listen on %s: %w", s.path, err)
	}
	close(s.ready)
	s.log.Info("ZDS server listening", "path", s.path)

	stop := context.AfterFunc(ctx, func() {
		s.shutdown()
		ln.Close()
	})
	var wg sync.WaitGroup
	err = s.accept(ctx, ln, &wg)
	stop()
	s.shutdown()
	ln.Close()
	wg.Wait()
	s.releaseSet()
	if fi, statErr := os.Lstat(s.path); statErr == nil && os.SameFile(fi, sock) {
		if rmErr := os.Remove(s.path); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("zds: remove socket: %w", rmErr))
		}
	}
	s.log.Info("ZDS server stopped", "path", s.path)
	return err
}

// accept runs the accept loop until the listener is closed.
func (s *Server) accept(ctx context.Context, ln *net.UnixListener, wg *sync.WaitGroup) error {
	var backoff time.Duration
	for {
		uc, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || s.closed() {
				return nil
			}
			if !temporaryAcceptError(err) {
				return fmt.Errorf("zds: accept: %w", err)
			}
			// Out of descriptors or memory: back off, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("ZDS accept failed, retrying", "error", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.state == stateClosed {
			s.mu.Unlock()
			uc.Close()
			continue
		}
		s.nextID++
		c := newConn(s, uc, s.nextID)
		s.all[c] = struct{}{}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(c)
		}()
	}
}

func temporaryAcceptError(err error) bool {
	for _, e := range []syscall.Errno{unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM, unix.ECONNABORTED, unix.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// listen binds a SOCK_SEQPACKET socket at path with mode 0600. The socket
// is bound inside a fresh 0700 directory, chmodded, then renamed into
// place, so there is no moment at which it is reachable with the umask's
// wider mode. A stale socket at path is replaced; a non-socket is not.
func listen(path string) (*net.UnixListener, fs.FileInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	switch fi, err := os.Lstat(path); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, nil, err
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, nil, fmt.Errorf("%s exists and is not a socket (%v); refusing to replace it", path, fi.Mode().Type())
	default:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".zds")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: tmpPath, Net: "unixpacket"})
	if err != nil {
		return nil, nil, err
	}
	// Serve removes the socket itself, and only if it is still ours.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, fs.FileInfo, error) {
		ln.Close()
		return nil, nil, err
	}
	if err := os.Chmod(tmpPath, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return ln, fi, nil
}

// shutdown stops accepting work and closes every connection.
func (s *Server) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateClosed {
		return
	}
	s.state = stateClosed
	for c := range s.all {
		c.close(errServerClosing)
	}
}

func (s *Server) closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateClosed
}

// releaseSet drops the set's netns references once nothing can send them.
func (s *Server) releaseSet() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.set {
		e.ns.release()
	}
	clear(s.set)
}

// Add enrolls w, replacing a workload with the same UID. If a ztunnel is
// connected, the newest connection is sent the add and Add returns its
// ack: an *AckError if ztunnel rejected it (w stays enrolled; Del it to
// give up). With no ztunnel connected, or if the connection is lost before
// the ack and no other takes over, Add returns nil: the next ztunnel gets
// w in its snapshot.
func (s *Server) Add(ctx context.Context, w Workload) error {
	if w.UID == "" {
		return errors.New("zds: add: empty UID")
	}
	if w.Info.GetName() == "" || w.Info.GetNamespace() == "" {
		return fmt.Errorf("zds: add %s: workload info with name and namespace is required", w.UID)
	}
	if w.Netns == nil {
		return fmt.Errorf("zds: add %s: no netns", w.UID)
	}
	ns, err := dupNetns(w.Netns)
	if err != nil {
		return fmt.Errorf("zds: add %s: %w", w.UID, err)
	}
	e := &entry{uid: w.UID, info: proto.CloneOf(w.Info), ns: ns}

	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		ns.release()
		return ErrServerClosed
	}
	if old := s.set[w.UID]; old != nil {
		old.ns.release()
	}
	s.set[w.UID] = e
	c := s.newestLocked()
	var done chan error
	if c != nil {
		done = make(chan error, 1)
		c.enqueueLocked(&item{kind: kindAdd, e: e, done: done})
	}
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("zds: add %s: waiting for ztunnel's ack: %w", w.UID, context.Cause(ctx))
	}
}

// Del removes the workload uid from the set and tells every connected
// ztunnel, even one that never got the workload: it may know it from
// before this agent started. It returns the joined *AckError of ztunnels
// that rejected the delete.
func (s *Server) Del(ctx context.Context, uid string) error {
	if uid == "" {
		return errors.New("zds: del: empty UID")
	}
	s.mu.Lock()
	if s.state == stateClosed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if old := s.set[uid]; old != nil {
		old.ns.release()
		delete(s.set, uid)
	}
	dones := make([]chan error, 0, len(s.conns))
	for _, c := range s.conns {
		d := make(chan error, 1)
		c.enqueueLocked(&item{kind: kindDel, uid: uid, done: d})
		dones = append(dones, d)
	}
	s.mu.Unlock()
	var errs []error
	for _, d := range dones {
		select {
		case err := <-d:
			errs = append(errs, err)
		case <-ctx.Done():
			return fmt.Errorf("zds: del %s: waiting for ztunnel's ack: %w", uid, context.Cause(ctx))
		}
	}
	return errors.Join(errs...)
}

func (s *Server) newestLocked() *conn {
	if len(s.conns) == 0 {
		return nil
	}
	return s.conns[len(s.conns)-1]
}

// register makes c the newest connection and queues its snapshot: the
// current set, then SnapshotSent. Later Adds and Dels queue behind it.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateClosed {
		return false
	}
	c.known = make(map[string]*entry, len(s.set))
	for _, uid := range slices.Sorted(maps.Keys(s.set)) {
		c.enqueueLocked(&item{kind: kindAdd, e: s.set[uid]})
	}
	c.enqueueLocked(&item{kind: kindSnapshotSent})
	s.conns = append(s.conns, c)
	s.m.connections.Add(context.Background(), 1)
	c.log.Info("ztunnel connected", "snapshot", len(s.set), "connections", len(s.conns))
	return true
}

// unregister drops a dead connection. Its unanswered requests are settled:
// if it was the newest, the next newest takes over its pending adds (their
// callers then get that ztunnel's ack) and is sent every add it missed
// while it was not the newest; other callers get nil, since a ztunnel that
// is gone neither serves the pod nor needs the delete.
func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.conns, c)
	if i < 0 {
		return
	}
	wasNewest := i == len(s.conns)-1
	s.conns = slices.Delete(s.conns, i, i+1)
	s.m.connections.Add(context.Background(), -1)
	left := c.queue
	c.queue, c.known = nil, nil
	var next *conn
	if wasNewest && s.state != stateClosed {
		next = s.newestLocked()
	}
	for _, it := range left {
		switch {
		case it.done == nil:
		case s.state == stateClosed:
			it.finish(ErrServerClosed)
		case next != nil && it.kind == kindAdd && s.set[it.e.uid] == it.e:
			next.enqueueLocked(&item{kind: kindAdd, e: it.e, done: it.done})
			it.done = nil
		default:
			it.finish(nil)
		}
		if it.e != nil {
			it.e.ns.release()
		}
	}
	if next == nil {
		return
	}
	missed := 0
	for _, uid := range slices.Sorted(maps.Keys(s.set)) {
		if e := s.set[uid]; next.known[uid] != e {
			next.enqueueLocked(&item{kind: kindAdd, e: e})
			missed++
		}
	}
	next.log.Info("newest ztunnel connection gone; this one takes over adds", "missed_adds", missed)
}

// AckError is ztunnel's rejection of a request.
type AckError struct {
	Op  string // "add" or "del"
	UID string
	Msg string // ztunnel's error text
}

func (e *AckError) Error() string {
	return fmt.Sprintf("zds: ztunnel rejected %s of %s: %s", e.Op, e.UID, e.Msg)
}
