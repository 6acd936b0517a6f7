package xdsclient

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
	"github.com/ambitmesh/ambit/services/ztunnel/internal/mesh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeADS is a scripted delta ADS server: each stream hands its requests
// to the test and sends what the test puts on out.
type fakeADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	streams chan *stream
}

type stream struct {
	reqs chan *discoveryv3.DeltaDiscoveryRequest
	out  chan *discoveryv3.DeltaDiscoveryResponse
	end  chan struct{}
}

func (f *fakeADS) DeltaAggregatedResources(s discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	st := &stream{reqs: make(chan *discoveryv3.DeltaDiscoveryRequest, 16), out: make(chan *discoveryv3.DeltaDiscoveryResponse, 16), end: make(chan struct{})}
	f.streams <- st
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				return
			}
			st.reqs <- r
		}
	}()
	for {
		select {
		case r := <-st.out:
			if err := s.Send(r); err != nil {
				return err
			}
		case <-st.end:
			return nil
		case <-s.Context().Done():
			return nil
		}
	}
}

func workloadRes(t *testing.T, uid, addr string, rawAddr []byte) *discoveryv3.Resource {
	a := &workloadpb.Address{Type: &workloadpb.Address_Workload{Workload: &workloadpb.Workload{Uid: uid, Name: "w", Namespace: "demo", Addresses: [][]byte{rawAddr}}}}
	if rawAddr == nil {
		a.GetWorkload().Addresses = [][]byte{netip.MustParseAddr(addr).AsSlice()}
	}
	b, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return &discoveryv3.Resource{Name: uid, Version: "v-" + uid, Resource: &anypb.Any{TypeUrl: TypeAddress, Value: b}}
}

func recv(t *testing.T, st *stream) *discoveryv3.DeltaDiscoveryRequest {
	t.Helper()
	select {
	case r := <-st.reqs:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no request from the client")
		return nil
	}
}

func TestSyncAckNackRemoveAndResume(t *testing.T) {
	ads := &fakeADS{streams: make(chan *stream, 4)}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, ads)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	store := mesh.New()
	c := New(Options{Conn: conn, Store: store, Node: "node-a", Version: "test", RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	st := <-ads.streams
	first := recv(t, st)
	if first.GetNode().GetId() != "ztunnel~node-a" || first.GetNode().GetMetadata().GetFields()["NODE_NAME"].GetStringValue() != "node-a" {
		t.Fatalf("node %v", first.GetNode())
	}
	second := recv(t, st)
	for _, r := range []*discoveryv3.DeltaDiscoveryRequest{first, second} {
		if len(r.GetResourceNamesSubscribe()) != 1 || r.GetResourceNamesSubscribe()[0] != "*" {
			t.Fatalf("not a wildcard subscription: %v", r)
		}
	}
	st.out <- &discoveryv3.DeltaDiscoveryResponse{TypeUrl: TypeAddress, Nonce: "n1", Resources: []*discoveryv3.Resource{
		workloadRes(t, "K//Pod/demo/a", "10.0.0.1", nil), workloadRes(t, "K//Pod/demo/b", "10.0.0.2", nil)}}
	if ack := recv(t, st); ack.GetResponseNonce() != "n1" || ack.GetErrorDetail() != nil {
		t.Fatalf("ack %v", ack)
	}
	st.out <- &discoveryv3.DeltaDiscoveryResponse{TypeUrl: TypeAuthorization, Nonce: "n2"}
	recv(t, st)
	select {
	case <-c.Synced():
	case <-time.After(5 * time.Second):
		t.Fatal("not synced after both types")
	}
	// A bad address: NACK naming it, nothing applied.
	st.out <- &discoveryv3.DeltaDiscoveryResponse{TypeUrl: TypeAddress, Nonce: "n3", Resources: []*discoveryv3.Resource{
		workloadRes(t, "K//Pod/demo/bad", "", []byte{1, 2, 3, 4, 5})}, RemovedResources: []string{"K//Pod/demo/a"}}
	nack := recv(t, st)
	if nack.GetResponseNonce() != "n3" || nack.GetErrorDetail() == nil || !strings.Contains(nack.GetErrorDetail().GetMessage(), "K//Pod/demo/bad") {
		t.Fatalf("nack %v", nack)
	}
	if _, ok := store.WorkloadByUID("K//Pod/demo/a"); !ok {
		t.Fatal("a NACKed response was applied")
	}
	st.out <- &discoveryv3.DeltaDiscoveryResponse{TypeUrl: TypeAddress, Nonce: "n4", RemovedResources: []string{"K//Pod/demo/a"}}
	recv(t, st)
	if _, ok := store.WorkloadByUID("K//Pod/demo/a"); ok {
		t.Fatal("removed resource still held")
	}
	if s := c.Status(); !s.Connected || s.NACKs != 1 {
		t.Fatalf("status %+v", s)
	}

	// The stream breaks: the state stays, and the next stream says what the
	// client holds.
	close(st.end)
	st2 := <-ads.streams
	if _, ok := store.WorkloadByUID("K//Pod/demo/b"); !ok {
		t.Fatal("state lost while disconnected")
	}
	r1 := recv(t, st2)
	if r1.GetTypeUrl() != TypeAddress || len(r1.GetInitialResourceVersions()) != 1 || r1.GetInitialResourceVersions()["K//Pod/demo/b"] != "v-K//Pod/demo/b" {
		t.Fatalf("initial_resource_versions %v", r1.GetInitialResourceVersions())
	}
	recv(t, st2)
}
