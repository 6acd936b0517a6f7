package proxystatus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/pkg/proxystatus"
	statusv1 "github.com/ambitmesh/ambit/proto/ambit/status/v1"
)

// reports is a replica's changing set of proxies.
type reports struct {
	mu sync.Mutex
	m  map[string]*statusv1.ProxyReport
}

func (r *reports) set(rs ...*statusv1.ProxyReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range rs {
		r.m[x.GetProxyId()] = x
	}
}

func (r *reports) drop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, id)
}

func (r *reports) collect() []*statusv1.ProxyReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*statusv1.ProxyReport, 0, len(r.m))
	for _, x := range r.m {
		out = append(out, x)
	}
	return out
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPublisherFeedsTracker runs a publisher and a tracker over NATS: the
// tracker follows changes, disconnections, batches split by size, and
// forgets the replica's proxies when the publisher stops.
func TestPublisherFeedsTracker(t *testing.T) {
	stack, err := devstack.Start(context.Background(), devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()
	nc, err := nats.Connect(stack.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	tr := proxystatus.NewTracker(proxystatus.TrackerOptions{})
	tctx, tcancel := context.WithCancel(context.Background())
	tdone := make(chan error, 1)
	go func() { tdone <- tr.Run(tctx, nc) }()
	defer func() { tcancel(); <-tdone }()

	rs := &reports{m: map[string]*statusv1.ProxyReport{}}
	for i := range 300 {
		rs.set(&statusv1.ProxyReport{ProxyId: fmt.Sprintf("ztunnel~node-%03d", i), Component: "ztunnel", Version: "v1", AckedRevision: 10})
	}
	pub, err := proxystatus.NewPublisher(proxystatus.PublisherOptions{
		NATS: nc, Replica: "xds-0", Collect: rs.collect,
		Interval: 20 * time.Millisecond, FullInterval: 200 * time.Millisecond,
		MaxBatchBytes: 2048, // several messages per full batch
	})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- pub.Run(pctx) }()

	eventually(t, "all proxies at 10", func() error {
		if d := tr.Status(10); d.Total != 300 || !d.Done() {
			return fmt.Errorf("%d/%d converged", d.Converged, d.Total)
		}
		return nil
	})
	rs.set(&statusv1.ProxyReport{ProxyId: "ztunnel~node-007", AckedRevision: 10, NackedRevision: 11, NackError: "bad"})
	rs.drop("ztunnel~node-008")
	eventually(t, "a rejection and a disconnection", func() error {
		d := tr.Status(11)
		if d.Total != 299 || len(d.Rejected) != 1 || d.Rejected[0].NackError != "bad" {
			return fmt.Errorf("%+v", d)
		}
		return nil
	})
	pcancel()
	if err := <-pdone; err != nil {
		t.Fatal(err)
	}
	eventually(t, "proxies forgotten after the replica stopped", func() error {
		if n := len(tr.Proxies()); n != 0 {
			return fmt.Errorf("%d proxies left", n)
		}
		return nil
	})
}
