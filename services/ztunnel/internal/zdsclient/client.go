package zdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/protobuf/proto"

	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

// Defaults for Options.
const (
	DefaultRetryMax        = 5 * time.Second
	DefaultMaxMessageBytes = 64 << 10
)

const (
	// retryMin is the first reconnect delay: short, because the usual cause
	// is an agent restart that is over in well under a second.
	retryMin = 100 * time.Millisecond
	// writeTimeout bounds sending one message. The socket is local and the
	// agent reads while it waits for our ack, so only a wedged agent hits it.
	writeTimeout = 5 * time.Second
	// maxAckErrorBytes bounds the error text sent back in an ack, so a
	// handler's long error cannot exceed what the agent accepts (64 KiB by
	// default).
	maxAckErrorBytes = 4 << 10
)

// Handler applies the agent's requests; in ztunnel it is the in-pod
// listener manager. The client calls it from one goroutine, one request at
// a time, and sends the returned error's text back in the ack.
type Handler interface {
	// Add starts serving the pod uid in the network namespace netns. The
	// handler owns netns whatever it returns and must close it. An add of
	// a uid already served is normal (every snapshot repeats it).
	Add(ctx context.Context, uid string, info *zdspb.WorkloadInfo, netns *os.File) error
	// Del stops serving uid; unknown uids are not an error.
	Del(ctx context.Context, uid string) error
	// Keep asks to keep serving uid, already known from an earlier
	// connection, without a new netns; it is only sent during a snapshot.
	Keep(ctx context.Context, uid string) error
	// Snapshot ends a connection's initial snapshot: uids are the pods added
	// or kept on this connection so far (sorted), and every other pod must
	// be dropped.
	Snapshot(ctx context.Context, uids []string) error
}

// Options configures a Client.
type Options struct {
	// Path of the agent's ZDS unix socket. Required.
	Path string
	// Handler applies the requests. Required.
	Handler Handler
	// Logger receives connection events and every reason a connection
	// ended; nil discards.
	Logger *slog.Logger
	// MeterProvider receives the metrics (Metric* names); nil is a no-op.
	MeterProvider metric.MeterProvider
	// RetryMax caps the reconnect backoff, which starts at 100ms (or
	// RetryMax if smaller) and doubles. Zero means DefaultRetryMax.
	RetryMax time.Duration
	// MaxMessageBytes is the largest message accepted from the agent; its
	// messages are small, so this only bounds hostile input. Zero means
	// DefaultMaxMessageBytes.
	MaxMessageBytes int
}

// Client keeps ztunnel connected to the agent's ZDS server.
type Client struct {
	path     string
	h        Handler
	log      *slog.Logger
	m        *metrics
	retryMax time.Duration
	maxMsg   int

	running  atomic.Bool
	synced   chan struct{}
	syncOnce sync.Once
}

// New validates opts and returns a Client that is not connected yet.
func New(opts Options) (*Client, error) {
	if opts.Path == "" {
		return nil, errors.New("zdsclient: Options.Path is required")
	}
	if opts.Handler == nil {
		return nil, errors.New("zdsclient: Options.Handler is required")
	}
	if opts.RetryMax < 0 || opts.MaxMessageBytes < 0 {
		return nil, errors.New("zdsclient: RetryMax and MaxMessageBytes must not be negative")
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = DefaultRetryMax
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
		return nil, fmt.Errorf("zdsclient: metrics: %w", err)
	}
	return &Client{
		path:     opts.Path,
		h:        opts.Handler,
		log:      opts.Logger.With("zds", opts.Path),
		m:        m,
		retryMax: opts.RetryMax,
		maxMsg:   opts.MaxMessageBytes,
		synced:   make(chan struct{}),
	}, nil
}

// Run is New followed by Client.Run.
func Run(ctx context.Context, opts Options) error {
	c, err := New(opts)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// Synced is closed once the first snapshot has been applied, so readiness
// can wait until ztunnel serves the pods that were already running.
func (c *Client) Synced() <-chan struct{} { return c.synced }

// Run connects to the agent and applies its requests until ctx is done,
// reconnecting with backoff whenever the connection ends. It returns nil
// when ctx is done; a Client runs once.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("zdsclient: Run called twice")
	}
	first := min(retryMin, c.retryMax)
	backoff := first
	failures := 0
	for {
		progressed, err := c.session(ctx)
		if ctx.Err() != nil {
			c.log.Info("ZDS client stopped")
			return nil
		}
		c.m.closed(err)
		if progressed {
			backoff, failures = first, 0
		}
		failures++
		// Half to full backoff: several ztunnels restarting with their agent
		// do not all knock at once.
		wait := backoff/2 + rand.N(backoff/2+1)
		level := slog.LevelWarn
		if failures > 1 && errors.Is(err, errDial) {
			level = slog.LevelDebug // the agent is down; said so already
		}
		c.log.Log(ctx, level, "ZDS connection ended; reconnecting",
			"reason", err.Error(), "retry_in", wait, "failures", failures)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			c.log.Info("ZDS client stopped")
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, c.retryMax)
	}
}

// session is one connection from dial to close. progressed reports whether
// the agent got as far as a valid request, which resets the backoff: an
// agent that accepts and drops us at once must not be hammered.
func (c *Client) session(ctx context.Context) (progressed bool, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unixpacket", c.path)
	if err != nil {
		return false, fmt.Errorf("%w at %s: %w", errDial, c.path, err)
	}
	uc := conn.(*net.UnixConn) // "unixpacket" always yields one
	defer uc.Close()
	// Closing the socket is the only way to interrupt a blocked read.
	stop := context.AfterFunc(ctx, func() { uc.Close() })
	defer stop()

	s := &session{
		c:    c,
		uc:   uc,
		buf:  make([]byte, c.maxMsg+1),
		oob:  make([]byte, oobSize),
		seen: make(map[string]struct{}),
	}
	hello, err := proto.Marshal(&zdspb.ZdsHello{Version: zdspb.Version_V1})
	if err != nil {
		return false, fmt.Errorf("encode hello: %w", err)
	}
	if err := s.write(hello); err != nil {
		return false, s.ended(ctx, fmt.Errorf("send hello: %w", err))
	}
	c.m.connected.Add(context.Background(), 1)
	defer c.m.connected.Add(context.Background(), -1)
	c.log.Info("connected to ZDS server")

	for {
		b, fds, err := readPacket(uc, s.buf, s.oob)
		if err != nil {
			return progressed, s.ended(ctx, err)
		}
		req, err := decodeRequest(b, len(fds))
		if err != nil {
			closeAll(fds)
			return progressed, s.ended(ctx, err)
		}
		progressed = true
		var netns *os.File
		if req.op == opAdd {
			netns = os.NewFile(uintptr(fds[0]), "netns:"+req.uid)
		}
		herr := s.handle(ctx, req, netns)
		c.m.request(req.op, herr != nil)
		if err := s.ack(herr); err != nil {
			return progressed, s.ended(ctx, fmt.Errorf("ack %s of %q: %w", req.op, req.uid, err))
		}
	}
}

// session is the state of one connection.
type session struct {
	c   *Client
	uc  *net.UnixConn
	buf []byte
	oob []byte

	snapshotDone bool
	seen         map[string]struct{} // uids added or kept before SnapshotSent
}

// ended turns an error caused by our own shutdown into errShutdown, so
// logs and metrics do not blame the agent.
func (s *session) ended(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", errShutdown, context.Cause(ctx))
	}
	return err
}

// handle applies one request and returns what to put in its ack.
func (s *session) handle(ctx context.Context, req request, netns *os.File) error {
	c := s.c
	switch req.op {
	case opAdd:
		log := c.log.With("uid", req.uid, "pod", req.info.GetNamespace()+"/"+req.info.GetName())
		if req.info.GetName() == "" || req.info.GetNamespace() == "" {
			netns.Close()
			err := fmt.Errorf("add %s: workload_info with name and namespace is required", req.uid)
			log.Warn("rejected ZDS add", "error", err)
			return err
		}
		if err := c.h.Add(ctx, req.uid, req.info, netns); err != nil {
			log.Warn("ZDS add failed", "error", err)
			return fmt.Errorf("add %s: %w", req.uid, err)
		}
		if !s.snapshotDone {
			s.seen[req.uid] = struct{}{}
		}
		log.Debug("ZDS add applied", "snapshot", !s.snapshotDone)
	case opDel:
		delete(s.seen, req.uid)
		if err := c.h.Del(ctx, req.uid); err != nil {
			c.log.Warn("ZDS del failed", "uid", req.uid, "error", err)
			return fmt.Errorf("del %s: %w", req.uid, err)
		}
		c.log.Debug("ZDS del applied", "uid", req.uid)
	case opKeep:
		if s.snapshotDone {
			err := fmt.Errorf("keep %s: keep is only valid before snapshot_sent", req.uid)
			c.log.Warn("rejected ZDS keep", "error", err)
			return err
		}
		if err := c.h.Keep(ctx, req.uid); err != nil {
			c.log.Warn("ZDS keep failed", "uid", req.uid, "error", err)
			return fmt.Errorf("keep %s: %w", req.uid, err)
		}
		s.seen[req.uid] = struct{}{}
		c.log.Debug("ZDS keep applied", "uid", req.uid)
	case opSnapshotSent:
		if s.snapshotDone {
			err := errors.New("snapshot_sent: already received on this connection")
			c.log.Warn("rejected ZDS snapshot_sent", "error", err)
			return err
		}
		s.snapshotDone = true
		uids := slices.Sorted(maps.Keys(s.seen))
		s.seen = nil
		err := c.h.Snapshot(ctx, uids)
		c.syncOnce.Do(func() { close(c.synced) })
		if err != nil {
			c.log.Warn("ZDS snapshot reconciliation failed", "pods", len(uids), "error", err)
			return fmt.Errorf("snapshot: %w", err)
		}
		c.log.Info("ZDS snapshot applied", "pods", len(uids))
	}
	return nil
}

// ack answers the request just handled.
func (s *session) ack(herr error) error {
	var msg string
	if herr != nil {
		msg = herr.Error()
		if len(msg) > maxAckErrorBytes {
			msg = msg[:maxAckErrorBytes]
		}
		// proto3 strings must be UTF-8, or Marshal fails.
		msg = strings.ToValidUTF8(msg, "\uFFFD")
	}
	b, err := encodeAck(msg)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	return s.write(b)
}

func (s *session) write(b []byte) error {
	if err := s.uc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	if _, _, err := s.uc.WriteMsgUnix(b, nil, nil); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
