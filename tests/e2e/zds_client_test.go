//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

// zdsMsg is one request the agent sent, as a test ztunnel saw it.
type zdsMsg struct {
	Kind string // add, del, snapshot, keep
	UID  string
	Info *zdspb.WorkloadInfo
	// NetnsInode identifies the netns whose fd came with an add.
	NetnsInode uint64
}

// testZtunnel speaks ztunnel's side of ZDS: hello, then ack every request.
type testZtunnel struct {
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []zdsMsg
	next chan struct{}
	done chan struct{}
}

func dialZDS(t *testing.T, path string) *testZtunnel {
	t.Helper()
	var conn *net.UnixConn
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
		if err == nil {
			conn = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial ZDS %s: %v", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hello, _ := proto.Marshal(&zdspb.ZdsHello{Version: zdspb.Version_V1})
	if _, err := conn.Write(hello); err != nil {
		t.Fatal(err)
	}
	z := &testZtunnel{conn: conn, next: make(chan struct{}, 1), done: make(chan struct{})}
	go z.loop()
	t.Cleanup(z.close)
	return z
}

func (z *testZtunnel) close() {
	z.conn.Close()
	<-z.done
}

func (z *testZtunnel) loop() {
	defer close(z.done)
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*8))
	for {
		n, oobn, _, _, err := z.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		var req zdspb.WorkloadRequest
		if err := proto.Unmarshal(buf[:n], &req); err != nil {
			return
		}
		m := zdsMsg{}
		var fds []int
		if oobn > 0 {
			cms, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, cm := range cms {
				if f, err := unix.ParseUnixRights(&cm); err == nil {
					fds = append(fds, f...)
				}
			}
		}
		for _, fd := range fds {
			var st unix.Stat_t
			if unix.Fstat(fd, &st) == nil {
				m.NetnsInode = st.Ino
			}
			unix.Close(fd)
		}
		switch p := req.Payload.(type) {
		case *zdspb.WorkloadRequest_Add:
			m.Kind, m.UID, m.Info = "add", p.Add.GetUid(), p.Add.GetWorkloadInfo()
		case *zdspb.WorkloadRequest_Del:
			m.Kind, m.UID = "del", p.Del.GetUid()
		case *zdspb.WorkloadRequest_SnapshotSent:
			m.Kind = "snapshot"
		case *zdspb.WorkloadRequest_Keep:
			m.Kind, m.UID = "keep", p.Keep.GetUid()
		}
		ack, _ := proto.Marshal(&zdspb.WorkloadResponse{Payload: &zdspb.WorkloadResponse_Ack{Ack: &zdspb.Ack{}}})
		if _, err := z.conn.Write(ack); err != nil {
			return
		}
		z.mu.Lock()
		z.msgs = append(z.msgs, m)
		z.mu.Unlock()
		select {
		case z.next <- struct{}{}:
		default:
		}
	}
}

// messages returns what arrived so far.
func (z *testZtunnel) messages() []zdsMsg {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]zdsMsg(nil), z.msgs...)
}

// waitFor waits until cond holds over the messages.
func (z *testZtunnel) waitFor(t *testing.T, what string, cond func([]zdsMsg) bool) []zdsMsg {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		ms := z.messages()
		if cond(ms) {
			return ms
		}
		select {
		case <-z.next:
		case <-z.done:
			t.Fatalf("ZDS connection closed while waiting for %s; got %v", what, ms)
		case <-deadline:
			t.Fatalf("timed out waiting for %s; got %v", what, ms)
		}
	}
}

func (m zdsMsg) String() string { return fmt.Sprintf("%s(%s)", m.Kind, m.UID) }
