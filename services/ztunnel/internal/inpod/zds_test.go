package inpod

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	zdspb "github.com/ambitmesh/ambit/proto/istio/zds"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/zdsclient"
)

// TestServesZDS plugs the Manager into the ZDS client and drives it from a
// minimal agent: an add brings the pod's listeners up, a del takes them down.
func TestServesZDS(t *testing.T) {
	requireRoot(t)
	ns := createNetns(t, "zds")
	path := filepath.Join(t.TempDir(), "zds.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := newRecorder(t)
	m := newManager(t, r, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- zdsclient.Run(ctx, zdsclient.Options{Path: path, Handler: m}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("zdsclient.Run: %v", err)
		}
	}()

	ln.SetDeadline(time.Now().Add(ioTimeout))
	uc, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 4096)
	read := func() []byte {
		n, _, _, _, err := uc.ReadMsgUnix(buf, nil)
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
	if err := proto.Unmarshal(read(), &zdspb.ZdsHello{}); err != nil {
		t.Fatal(err)
	}
	request := func(req *zdspb.WorkloadRequest, oob []byte) {
		t.Helper()
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := uc.WriteMsgUnix(b, oob, nil); err != nil {
			t.Fatal(err)
		}
		resp := &zdspb.WorkloadResponse{}
		if err := proto.Unmarshal(read(), resp); err != nil || resp.GetAck() == nil || resp.GetAck().GetError() != "" {
			t.Fatalf("%v answered %v, %v", req, resp, err)
		}
	}

	request(&zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Add{Add: &zdspb.AddWorkload{
		Uid: "uid-web", WorkloadInfo: podInfo("web"),
	}}}, unix.UnixRights(ns.Fd()))
	request(&zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_SnapshotSent{SnapshotSent: &zdspb.SnapshotSent{}}}, nil)

	dialFrom(t, ns, "127.0.0.1:15001")
	if a := r.next(t); a.pod.UID() != "uid-web" || a.kind != Outbound {
		t.Fatalf("connection reached %v of %v", a.kind, a.pod)
	}

	request(&zdspb.WorkloadRequest{Payload: &zdspb.WorkloadRequest_Del{Del: &zdspb.DelWorkload{Uid: "uid-web"}}}, nil)
	if len(m.Pods()) != 0 {
		t.Fatalf("pods after del: %v", m.Pods())
	}
	if _, err := ns.Dial(t.Context(), nil, "tcp", "127.0.0.1:15001"); !isRefused(err) {
		t.Fatalf("port after del: %v, want refused", err)
	}
}
