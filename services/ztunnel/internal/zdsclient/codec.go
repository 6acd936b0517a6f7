package zdsclient

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

// Reasons a connection ends; they are the "reason" label of
// MetricConnectionCloses and are wrapped in the logged error.
var (
	errDial       = errors.New("cannot connect to the ZDS server")
	errPeerClosed = errors.New("agent closed the connection")
	errOversized  = errors.New("oversized message")
	errControl    = errors.New("unexpected control message")
	errMalformed  = errors.New("malformed message")
	errShutdown   = errors.New("client shutting down")
)

// op is the kind of a WorkloadRequest.
type op int

const (
	opAdd op = iota + 1
	opDel
	opKeep
	opSnapshotSent
)

func (o op) String() string {
	switch o {
	case opAdd:
		return "add"
	case opDel:
		return "del"
	case opKeep:
		return "keep"
	case opSnapshotSent:
		return "snapshot_sent"
	default:
		return fmt.Sprintf("op(%d)", int(o))
	}
}

// request is one decoded WorkloadRequest.
type request struct {
	op   op
	uid  string              // add, del, keep
	info *zdspb.WorkloadInfo // add; may be nil or incomplete, checked later
}

// maxUIDBytes bounds a uid. Kubernetes uids are 36-byte UUIDs; anything
// near this is garbage, and the uid ends up in logs and map keys.
const maxUIDBytes = 256

// unmarshalOpts parses the agent's messages. Unknown fields are dropped
// (nothing re-encodes them) and nesting is bounded: the messages are
// shallow, so deep group nesting can only be an attack.
var unmarshalOpts = proto.UnmarshalOptions{DiscardUnknown: true, RecursionLimit: 8}

// decodeRequest parses one packet that arrived with nfds descriptors. It
// checks the shape of the protocol — a known payload, a uid where one is
// required, exactly one descriptor with an add and none otherwise — and
// leaves the meaning (is workload_info complete, is a keep allowed now) to
// the caller, which answers those with an error ack instead of dropping the
// connection.
func decodeRequest(b []byte, nfds int) (request, error) {
	r := &zdspb.WorkloadRequest{}
	if err := unmarshalOpts.Unmarshal(b, r); err != nil {
		return request{}, fmt.Errorf("%w: WorkloadRequest: %w", errMalformed, err)
	}
	var req request
	switch p := r.GetPayload().(type) {
	case *zdspb.WorkloadRequest_Add:
		req = request{op: opAdd, uid: p.Add.GetUid(), info: p.Add.GetWorkloadInfo()}
	case *zdspb.WorkloadRequest_Del:
		req = request{op: opDel, uid: p.Del.GetUid()}
	case *zdspb.WorkloadRequest_Keep:
		req = request{op: opKeep, uid: p.Keep.GetUid()}
	case *zdspb.WorkloadRequest_SnapshotSent:
		req = request{op: opSnapshotSent}
	default:
		return request{}, fmt.Errorf("%w: WorkloadRequest without a known payload", errMalformed)
	}
	if req.op != opSnapshotSent {
		if req.uid == "" {
			return request{}, fmt.Errorf("%w: %s without uid", errMalformed, req.op)
		}
		if len(req.uid) > maxUIDBytes {
			return request{}, fmt.Errorf("%w: %s uid of %d bytes (max %d)", errMalformed, req.op, len(req.uid), maxUIDBytes)
		}
	}
	want := 0
	if req.op == opAdd {
		want = 1
	}
	if nfds != want {
		return request{}, fmt.Errorf("%w: %s of %q came with %d descriptors, want %d", errMalformed, req.op, req.uid, nfds, want)
	}
	return req, nil
}

// oobSize fits a handful of descriptors: one is all the protocol sends,
// the room beyond lets us see (and close) what a misbehaving agent sends.
// More sets MSG_CTRUNC and the kernel closes the rest itself.
var oobSize = unix.CmsgSpace(8*4) + unix.CmsgSpace(unix.SizeofUcred)

// readPacket reads one packet into buf, whose length must be the largest
// accepted message plus one, so a packet that fills buf is known to be too
// big even if the kernel does not flag truncation. It returns the message
// and the descriptors that came with it, which the caller then owns; on
// error every received descriptor is already closed.
//
// net.UnixConn.ReadMsgUnix is recvmsg(2) with MSG_CMSG_CLOEXEC and returns
// its msg_flags, so MSG_TRUNC and MSG_CTRUNC are seen as they are.
func readPacket(uc *net.UnixConn, buf, oob []byte) ([]byte, []int, error) {
	n, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
	var fds []int
	var ctlErr error
	if oobn > 0 {
		fds, ctlErr = parseControl(oob[:oobn])
	}
	fail := func(err error) ([]byte, []int, error) {
		closeAll(fds)
		return nil, nil, err
	}
	switch {
	case err != nil && !errors.Is(err, io.EOF):
		return fail(fmt.Errorf("read: %w", err))
	case ctlErr != nil:
		return fail(ctlErr)
	case flags&unix.MSG_CTRUNC != 0:
		return fail(fmt.Errorf("%w: control data truncated (%d descriptors seen)", errControl, len(fds)))
	case flags&unix.MSG_TRUNC != 0 || n >= len(buf):
		return fail(fmt.Errorf("%w: more than %d bytes", errOversized, len(buf)-1))
	case n == 0 && len(fds) == 0:
		// A zero-length read is how SOCK_SEQPACKET reports the peer's
		// close (Go turns it into io.EOF); an empty packet would be an
		// empty WorkloadRequest, malformed anyway.
		return fail(errPeerClosed)
	case n == 0:
		return fail(fmt.Errorf("%w: empty packet with %d descriptors", errMalformed, len(fds)))
	}
	return buf[:n], fds, nil
}

// parseControl returns the descriptors of every SCM_RIGHTS message in oob.
// Anything else (credentials, unknown levels) is an error, after the
// descriptors found so far are closed.
func parseControl(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("%w: unparseable control data (%d bytes): %w", errControl, len(oob), err)
	}
	var fds []int
	var other []string
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			other = append(other, fmt.Sprintf("level %d type %d", m.Header.Level, m.Header.Type))
			continue
		}
		got, err := unix.ParseUnixRights(m)
		if err != nil {
			other = append(other, "malformed SCM_RIGHTS")
			continue
		}
		fds = append(fds, got...)
	}
	if len(other) > 0 {
		closeAll(fds)
		return nil, fmt.Errorf("%w: %s", errControl, strings.Join(other, ", "))
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// encodeAck builds the answer to a request; msg is empty on success.
func encodeAck(msg string) ([]byte, error) {
	return proto.Marshal(&zdspb.WorkloadResponse{Payload: &zdspb.WorkloadResponse_Ack{Ack: &zdspb.Ack{Error: msg}}})
}

// reasonLabel maps why a connection ended to a short metric label.
func reasonLabel(err error) string {
	switch {
	case errors.Is(err, errDial):
		return "dial"
	case errors.Is(err, errPeerClosed):
		return "peer_closed"
	case errors.Is(err, errOversized):
		return "oversized"
	case errors.Is(err, errControl):
		return "control_message"
	case errors.Is(err, errMalformed):
		return "malformed"
	case errors.Is(err, errShutdown):
		return "shutdown"
	default:
		return "io"
	}
}
