package zds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

type kind int

const (
	kindAdd kind = iota
	kindDel
	kindSnapshotSent
)

func (k kind) String() string {
	switch k {
	case kindAdd:
		return "add"
	case kindDel:
		return "del"
	default:
		return "snapshot_sent"
	}
}

// item is one queued request. An add holds a reference on its entry's
// netns descriptor until it is answered or dropped.
type item struct {
	kind kind
	e    *entry     // add
	uid  string     // del
	done chan error // the waiting caller, cap 1; nil for snapshot requests
}

func (it *item) uidOf() string {
	if it.e != nil {
		return it.e.uid
	}
	return it.uid
}

// finish hands the result to the waiting caller, once.
func (it *item) finish(err error) {
	if it.done != nil {
		it.done <- err
		it.done = nil
	}
}

// oobSize fits a few descriptors and credentials: enough to see (and
// close) what a misbehaving peer sends; more sets MSG_CTRUNC and the kernel
// drops the rest.
var oobSize = unix.CmsgSpace(16*4) + unix.CmsgSpace(unix.SizeofUcred)

// conn is one ztunnel connection: a writer (the handle goroutine) that
// sends the queue one request at a time, and a reader that passes acks to
// it and closes the connection on anything else.
type conn struct {
	s   *Server
	uc  *net.UnixConn
	log *slog.Logger
	buf []byte
	oob []byte

	// Guarded by s.mu.
	queue []*item           // head is in flight or next
	known map[string]*entry // what ztunnel has once the queue drains

	wake     chan struct{} // cap 1: the queue grew
	awaiting atomic.Bool   // a request is in flight
	acks     chan *zdspb.Ack
	once     sync.Once
	done     chan struct{} // closed by close
	err      error         // why, set before done is closed
}

func newConn(s *Server, uc *net.UnixConn, id uint64) *conn {
	log := s.log.With("conn", id)
	if rc, err := uc.SyscallConn(); err == nil {
		var cred *unix.Ucred
		_ = rc.Control(func(fd uintptr) {
			cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		})
		if cred != nil {
			log = log.With("peer_pid", cred.Pid, "peer_uid", cred.Uid)
		}
	}
	return &conn{
		s:    s,
		uc:   uc,
		log:  log,
		buf:  make([]byte, s.maxMsg+1),
		oob:  make([]byte, oobSize),
		wake: make(chan struct{}, 1),
		acks: make(chan *zdspb.Ack, 1),
		done: make(chan struct{}),
	}
}

// close shuts the connection down for reason, logging it first so the
// log line exists by the time the peer sees the close.
func (c *conn) close(reason error) {
	c.once.Do(func() {
		c.err = reason
		level := slog.LevelWarn
		if errors.Is(reason, errPeerClosed) || errors.Is(reason, errServerClosing) {
			level = slog.LevelInfo
		}
		c.log.Log(context.Background(), level, "closing ztunnel connection", "reason", reason.Error())
		c.s.m.connClosed(reason)
		close(c.done)
		c.uc.Close()
	})
}

// enqueueLocked appends a request; s.mu must be held so that queue order
// is the order in which the set changed.
func (c *conn) enqueueLocked(it *item) {
	switch it.kind {
	case kindAdd:
		it.e.ns.acquire()
		c.known[it.e.uid] = it.e
	case kindDel:
		delete(c.known, it.uid)
	}
	c.queue = append(c.queue, it)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// handle runs one connection from hello to close.
func (s *Server) handle(c *conn) {
	defer func() {
		s.mu.Lock()
		delete(s.all, c)
		s.mu.Unlock()
	}()
	if err := c.readHello(); err != nil {
		c.close(err)
		return
	}
	if !s.register(c) {
		c.close(errServerClosing)
		return
	}
	var reader sync.WaitGroup
	reader.Go(c.readLoop)
	s.writeLoop(c)
	reader.Wait()
	s.unregister(c)
}

// readHello waits up to the ack timeout for ztunnel's ZdsHello.
func (c *conn) readHello() error {
	if err := c.uc.SetReadDeadline(time.Now().Add(c.s.ackTimeout)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	b, err := readPacket(c.uc, c.buf, c.oob)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: no ZdsHello within %v", errAckTimeout, c.s.ackTimeout)
	}
	if err != nil {
		return fmt.Errorf("waiting for ZdsHello: %w", err)
	}
	if _, err := decodeHello(b); err != nil {
		return err
	}
	if err := c.uc.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("clear deadline: %w", err)
	}
	return nil
}

// readLoop passes each ack to the writer. Anything else ends the
// connection: ztunnel speaks only when answering.
func (c *conn) readLoop() {
	for {
		b, err := readPacket(c.uc, c.buf, c.oob)
		if err != nil {
			c.close(err)
			return
		}
		ack, err := decodeResponse(b)
		if err != nil {
			c.close(err)
			return
		}
		if !c.awaiting.CompareAndSwap(true, false) {
			c.close(fmt.Errorf("%w: ack while no request was in flight", errUnsolicited))
			return
		}
		c.acks <- ack // cap 1 and one request in flight: never blocks
	}
}

// writeLoop sends the queue head, waits for its ack, settles it and moves
// on, until the connection closes.
func (s *Server) writeLoop(c *conn) {
	for {
		s.mu.Lock()
		var it *item
		if len(c.queue) > 0 {
			it = c.queue[0]
		}
		s.mu.Unlock()
		if it == nil {
			select {
			case <-c.wake:
				continue
			case <-c.done:
				return
			}
		}
		ack, err := s.exchange(c, it)
		if err != nil {
			c.close(err)
			return
		}
		s.mu.Lock()
		c.queue[0] = nil
		c.queue = c.queue[1:]
		if ack.GetError() != "" && it.kind == kindAdd && c.known[it.e.uid] == it.e {
			delete(c.known, it.e.uid) // a later takeover may retry it
		}
		s.mu.Unlock()
		s.settle(c, it, ack)
	}
}

// exchange sends one request and waits for its ack.
func (s *Server) exchange(c *conn, it *item) (*zdspb.Ack, error) {
	req := &zdspb.WorkloadRequest{}
	var oob []byte
	switch it.kind {
	case kindAdd:
		req.Payload = &zdspb.WorkloadRequest_Add{Add: &zdspb.AddWorkload{Uid: it.e.uid, WorkloadInfo: it.e.info}}
		oob = unix.UnixRights(it.e.ns.fd)
	case kindDel:
		req.Payload = &zdspb.WorkloadRequest_Del{Del: &zdspb.DelWorkload{Uid: it.uid}}
	case kindSnapshotSent:
		req.Payload = &zdspb.WorkloadRequest_SnapshotSent{SnapshotSent: &zdspb.SnapshotSent{}}
	}
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", it.kind, err)
	}
	deadline := time.Now().Add(s.ackTimeout)
	if err := c.uc.SetWriteDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	c.awaiting.Store(true) // before sending: the ack may beat the next line
	if _, _, err := c.uc.WriteMsgUnix(b, oob, nil); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w: could not send %s of %s within %v", errAckTimeout, it.kind, it.uidOf(), s.ackTimeout)
		}
		return nil, fmt.Errorf("send %s: %w", it.kind, err)
	}
	s.m.sent.Add(context.Background(), 1, typeAttr(it.kind.String()))
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case ack := <-c.acks:
		return ack, nil
	case <-t.C:
		return nil, fmt.Errorf("%w: no answer to %s of %q within %v", errAckTimeout, it.kind, it.uidOf(), s.ackTimeout)
	case <-c.done:
		return nil, c.err
	}
}

// settle reports an answered request to its caller, the log and metrics.
func (s *Server) settle(c *conn, it *item, ack *zdspb.Ack) {
	if it.e != nil {
		defer it.e.ns.release()
	}
	msg := ack.GetError()
	if msg == "" {
		c.log.Debug("ztunnel acked", "type", it.kind.String(), "uid", it.uidOf())
		it.finish(nil)
		return
	}
	s.m.ackErrors.Add(context.Background(), 1, typeAttr(it.kind.String()))
	attrs := []any{"type", it.kind.String(), "uid", it.uidOf(), "error", msg}
	if it.e != nil {
		attrs = append(attrs, "pod", it.e.info.GetNamespace()+"/"+it.e.info.GetName())
	}
	c.log.Warn("ztunnel rejected request", attrs...)
	it.finish(&AckError{Op: it.kind.String(), UID: it.uidOf(), Msg: msg})
}
