package zdsclient

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
)

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func addReq(uid string, info *zdspb.WorkloadInfo) *zdspb.WorkloadRequest {
	return &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Add{Add: &zdspb.AddWorkload{Uid: uid, WorkloadInfo: info}}}
}

func delReq(uid string) *zdspb.WorkloadRequest {
	return &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Del{Del: &zdspb.DelWorkload{Uid: uid}}}
}

func keepReq(uid string) *zdspb.WorkloadRequest {
	return &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Keep{Keep: &zdspb.KeepWorkload{Uid: uid}}}
}

func snapshotReq() *zdspb.WorkloadRequest {
	return &zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_SnapshotSent{SnapshotSent: &zdspb.SnapshotSent{}}}
}

func info(name string) *zdspb.WorkloadInfo {
	return &zdspb.WorkloadInfo{Name: name, Namespace: "default", ServiceAccount: "sa"}
}

func TestDecodeRequest(t *testing.T) {
	cases := []struct {
		name  string
		in    []byte
		nfds  int
		want  request
		error string // substring; "" for success
	}{
		{"add", marshal(t, addReq("u1", info("p1"))), 1, request{op: opAdd, uid: "u1"}, ""},
		{"add without info decodes", marshal(t, addReq("u1", nil)), 1, request{op: opAdd, uid: "u1"}, ""},
		{"del", marshal(t, delReq("u1")), 0, request{op: opDel, uid: "u1"}, ""},
		{"keep", marshal(t, keepReq("u1")), 0, request{op: opKeep, uid: "u1"}, ""},
		{"snapshot sent", marshal(t, snapshotReq()), 0, request{op: opSnapshotSent}, ""},
		{"unknown field ignored", append(marshal(t, delReq("u1")), 0x50, 0x01), 0, request{op: opDel, uid: "u1"}, ""},
		{"add without fd", marshal(t, addReq("u1", info("p1"))), 0, request{}, "came with 0 descriptors, want 1"},
		{"add with two fds", marshal(t, addReq("u1", info("p1"))), 2, request{}, "came with 2 descriptors, want 1"},
		{"del with fd", marshal(t, delReq("u1")), 1, request{}, "came with 1 descriptors, want 0"},
		{"snapshot with fd", marshal(t, snapshotReq()), 1, request{}, "want 0"},
		{"add without uid", marshal(t, addReq("", info("p1"))), 1, request{}, "add without uid"},
		{"del without uid", marshal(t, delReq("")), 0, request{}, "del without uid"},
		{"keep without uid", marshal(t, keepReq("")), 0, request{}, "keep without uid"},
		{"uid too long", marshal(t, delReq(strings.Repeat("x", maxUIDBytes+1))), 0, request{}, "uid of 257 bytes"},
		{"empty", nil, 0, request{}, "without a known payload"},
		{"unknown payload", []byte{0x22, 0x00}, 0, request{}, "without a known payload"},
		{"truncated", marshal(t, addReq("u1", info("p1")))[:5], 1, request{}, "malformed message: WorkloadRequest"},
		{"invalid utf-8 uid", []byte{0x12, 0x03, 0x12, 0x01, 0xff}, 0, request{}, "malformed message: WorkloadRequest"},
		{"deep groups", []byte(strings.Repeat("\x0b", 100)), 0, request{}, "malformed message"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRequest(tc.in, tc.nfds)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) || !errors.Is(err, errMalformed) {
					t.Fatalf("decodeRequest = %+v, %v; want malformed error containing %q", got, err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeRequest: %v", err)
			}
			if got.op != tc.want.op || got.uid != tc.want.uid {
				t.Fatalf("decodeRequest = %v %q, want %v %q", got.op, got.uid, tc.want.op, tc.want.uid)
			}
		})
	}
}

func TestDecodeAddKeepsInfo(t *testing.T) {
	got, err := decodeRequest(marshal(t, addReq("u1", info("p1"))), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.info, info("p1")) {
		t.Fatalf("info = %v", got.info)
	}
}

// FuzzDecodeRequest checks that no packet panics the decoder, that what it
// accepts obeys the protocol's shape, and that an accepted request survives
// a round trip.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(marshal(f, addReq("u1", info("p1"))), uint8(1))
	f.Add(marshal(f, delReq("u1")), uint8(0))
	f.Add(marshal(f, keepReq("u1")), uint8(0))
	f.Add(marshal(f, snapshotReq()), uint8(0))
	f.Add([]byte{}, uint8(0))
	f.Add([]byte{0x0a, 0x80}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, nfds uint8) {
		req, err := decodeRequest(b, int(nfds))
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v does not wrap errMalformed", err)
			}
			return
		}
		if (req.op == opAdd) != (nfds == 1) || (req.op != opAdd && nfds != 0) {
			t.Fatalf("accepted %v with %d descriptors", req.op, nfds)
		}
		if (req.op == opSnapshotSent) != (req.uid == "") || len(req.uid) > maxUIDBytes {
			t.Fatalf("accepted %v with uid %q", req.op, req.uid)
		}
		var m *zdspb.WorkloadRequest
		switch req.op {
		case opAdd:
			m = addReq(req.uid, req.info)
		case opDel:
			m = delReq(req.uid)
		case opKeep:
			m = keepReq(req.uid)
		case opSnapshotSent:
			m = snapshotReq()
		default:
			t.Fatalf("unknown op %v", req.op)
		}
		again, err := decodeRequest(marshal(t, m), int(nfds))
		if err != nil || again.op != req.op || again.uid != req.uid || !proto.Equal(again.info, req.info) {
			t.Fatalf("round trip of %v %q: %+v, %v", req.op, req.uid, again, err)
		}
	})
}

func TestEncodeAck(t *testing.T) {
	for _, msg := range []string{"", "boom"} {
		b, err := encodeAck(msg)
		if err != nil {
			t.Fatal(err)
		}
		r := &zdspb.WorkloadResponse{}
		if err := proto.Unmarshal(b, r); err != nil || r.GetAck() == nil || r.GetAck().GetError() != msg {
			t.Fatalf("ack %q encodes to %v, %v", msg, r, err)
		}
	}
}
