package proxystatus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/pkg/proxystatus"
	statusv1 "github.com/ambitmesh/ambit/proto/ambit/status/v1"
)

func report(id string, acked, nacked int64, nackErr string) *statusv1.ProxyReport {
	return &statusv1.ProxyReport{ProxyId: id, AckedRevision: acked, NackedRevision: nacked, NackError: nackErr}
}

func TestStatusClassifiesProxies(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := proxystatus.NewTracker(proxystatus.TrackerOptions{Now: func() time.Time { return now }, ExpireAfter: 10 * time.Second})
	tr.Ingest(&statusv1.ProxyReportBatch{Replica: "xds-0", Sequence: 1, Full: true, Reports: []*statusv1.ProxyReport{
		report("ztunnel~a", 50, 0, ""),
		report("ztunnel~b", 40, 0, ""),
		report("ztunnel~c", 40, 45, "bad policy"),
	}})
	tr.Ingest(&statusv1.ProxyReportBatch{Replica: "xds-1", Sequence: 7, Full: true, Reports: []*statusv1.ProxyReport{
		report("ztunnel~d", 60, 0, ""),
	}})

	d := tr.Status(45)
	if d.Total != 4 || d.Converged != 2 || len(d.Pending) != 1 || d.Pending[0].ID != "ztunnel~b" || len(d.Rejected) != 1 || d.Rejected[0].NackError != "bad policy" {
		t.Fatalf("status(45) = %+v", d)
	}
	if d.Done() {
		t.Fatal("Done with a pending and a rejected proxy")
	}
	if d := tr.Status(40); !d.Done() || d.Converged != 4 {
		t.Fatalf("status(40) = %+v, want all converged", d)
	}

	// A delta batch updates one proxy and drops a disconnected one.
	tr.Ingest(&statusv1.ProxyReportBatch{Replica: "xds-0", Sequence: 2, Reports: []*statusv1.ProxyReport{
		report("ztunnel~b", 45, 0, ""),
		{ProxyId: "ztunnel~c", Disconnected: true},
	}})
	if d := tr.Status(45); !d.Done() || d.Total != 3 {
		t.Fatalf("after delta: %+v", d)
	}

	// A replica that stops reporting is forgotten.
	now = now.Add(11 * time.Second)
	tr.Ingest(&statusv1.ProxyReportBatch{Replica: "xds-1", Sequence: 8, Full: true, Reports: []*statusv1.ProxyReport{report("ztunnel~d", 60, 0, "")}})
	if d := tr.Status(45); d.Total != 1 {
		t.Fatalf("after xds-0 went silent: %+v", d)
	}

	// A restarted replica (smaller sequence) starts from a clean slate.
	tr.Ingest(&statusv1.ProxyReportBatch{Replica: "xds-1", Sequence: 1, Reports: []*statusv1.ProxyReport{report("ztunnel~e", 1, 0, "")}})
	ps := tr.Proxies()
	if len(ps) != 1 || ps[0].ID != "ztunnel~e" {
		t.Fatalf("after restart: %+v", ps)
	}
}

func TestRunReceivesBatchesOverNATS(t *testing.T) {
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, nc) }()

	b, _ := proto.Marshal(&statusv1.ProxyReportBatch{Replica: "xds.a", Sequence: 1, Full: true, Reports: []*statusv1.ProxyReport{report("p", 5, 0, "")}})
	deadline := time.Now().Add(10 * time.Second)
	for len(tr.Proxies()) == 0 {
		// Publish until the subscription (started concurrently) sees one.
		if err := nc.Publish(proxystatus.Subject("xds.a"), b); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		if time.Now().After(deadline) {
			t.Fatal("no batch received")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := tr.Proxies()[0]; p.Replica != "xds.a" || p.AckedRevision != 5 {
		t.Fatalf("proxy = %+v", p)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
