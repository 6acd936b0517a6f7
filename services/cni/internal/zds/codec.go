package zds

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

// Reasons a connection is closed; they are the "reason" label of
// MetricConnectionErrors and are wrapped in the logged error.
var (
	errPeerClosed    = errors.New("ztunnel closed the connection")
	errOversized     = errors.New("oversized message")
	errControl       = errors.New("unexpected control message")
	errMalformed     = errors.New("malformed message")
	errVersion       = errors.New("unsupported ZDS version")
	errUnsolicited   = errors.New("unsolicited response")
	errAckTimeout    = errors.New("ack timeout")
	errServerClosing = errors.New("server shutting down")
)

// unmarshalOpts parses ztunnel's messages. Unknown fields are dropped
// rather than kept (nothing re-encodes them) and nesting is bounded: both
// messages are flat, so deep group nesting can only be an attack.
var unmarshalOpts = proto.UnmarshalOptions{DiscardUnknown: true, RecursionLimit: 8}

// decodeHello parses ztunnel's first message and checks its version.
func decodeHello(b []byte) (*zdspb.ZdsHello, error) {
	h := &zdspb.ZdsHello{}
	if err := unmarshalOpts.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("%w: ZdsHello: %w", errMalformed, err)
	}
	if h.GetVersion() != zdspb.Version_V1 {
		return nil, fmt.Errorf("%w %v in ZdsHello (want %v)", errVersion, h.GetVersion(), zdspb.Version_V1)
	}
	return h, nil
}

// decodeResponse parses ztunnel's answer to a request: a WorkloadResponse
// that must carry an ack.
func decodeResponse(b []byte) (*zdspb.Ack, error) {
	r := &zdspb.WorkloadResponse{}
	if err := unmarshalOpts.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%w: WorkloadResponse: %w", errMalformed, err)
	}
	ack := r.GetAck()
	if ack == nil {
		return nil, fmt.Errorf("%w: WorkloadResponse without ack", errMalformed)
	}
	return ack, nil
}

// readPacket reads one packet into buf, whose length must be the largest
// accepted message plus one, so a packet that exactly fills buf is known to
// be too big even when the kernel does not flag truncation. Any ancillary
// data is an error, and descriptors it carried are closed first.
//
// net.UnixConn.ReadMsgUnix is recvmsg(2) with MSG_CMSG_CLOEXEC, and returns
// recvmsg's msg_flags, so MSG_TRUNC and MSG_CTRUNC are seen as they are.
func readPacket(uc *net.UnixConn, buf, oob []byte) ([]byte, error) {
	n, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
	var ctl string
	if oobn > 0 {
		ctl = discardControl(oob[:oobn])
	}
	switch {
	case errors.Is(err, io.EOF) && oobn == 0:
		return nil, errPeerClosed
	case err != nil && oobn == 0:
		return nil, fmt.Errorf("read: %w", err)
	case oobn > 0 || flags&unix.MSG_CTRUNC != 0:
		if flags&unix.MSG_CTRUNC != 0 {
			ctl += " (truncated)"
		}
		return nil, fmt.Errorf("%w: %s", errControl, strings.TrimSpace(ctl))
	case flags&unix.MSG_TRUNC != 0 || n >= len(buf):
		return nil, fmt.Errorf("%w: more than %d bytes", errOversized, len(buf)-1)
	}
	return buf[:n], nil
}

// discardControl closes every descriptor in a received control buffer and
// describes what was in it, for the log.
func discardControl(oob []byte) string {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Sprintf("unparseable control data (%d bytes)", len(oob))
	}
	var parts []string
	for i := range msgs {
		m := &msgs[i]
		switch {
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_RIGHTS:
			fds, err := unix.ParseUnixRights(m)
			if err != nil {
				parts = append(parts, "malformed SCM_RIGHTS")
				continue
			}
			for _, fd := range fds {
				unix.Close(fd)
			}
			parts = append(parts, fmt.Sprintf("SCM_RIGHTS with %d fd(s), closed", len(fds)))
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_CREDENTIALS:
			parts = append(parts, "SCM_CREDENTIALS")
		default:
			parts = append(parts, fmt.Sprintf("level %d type %d", m.Header.Level, m.Header.Type))
		}
	}
	return strings.Join(parts, ", ")
}

// reasonLabel maps a close reason to a short metric label.
func reasonLabel(err error) string {
	switch {
	case errors.Is(err, errPeerClosed):
		return "peer_closed"
	case errors.Is(err, errOversized):
		return "oversized"
	case errors.Is(err, errControl):
		return "control_message"
	case errors.Is(err, errMalformed):
		return "malformed"
	case errors.Is(err, errVersion):
		return "version"
	case errors.Is(err, errUnsolicited):
		return "unsolicited"
	case errors.Is(err, errAckTimeout):
		return "ack_timeout"
	case errors.Is(err, errServerClosing):
		return "shutdown"
	default:
		return "io"
	}
}
