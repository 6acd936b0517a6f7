package bundle_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/bundle"
	"github.com/ambitmesh/ambit/services/ca/internal/catest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, catest.LeakOptions()...) }

func TestDistribution(t *testing.T) {
	cli := catest.Etcd(t)
	ctx := context.Background()
	td := spiffe.DefaultTrustDomain()
	br := bundle.NewBroadcaster()
	_ = br.Publish(ctx, &bundle.Bundle{Version: 1, TrustDomain: td})
	rep := &bundle.Reporter{Etcd: cli, Replica: "r1", Source: br, LeaseTTL: 2 * time.Second}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = rep.Run(runCtx) }()

	w1, w2 := br.Register("a"), br.Register("b")
	w1.Ack(1)
	w2.Ack(1)
	_ = br.Publish(ctx, &bundle.Bundle{Version: 2, TrustDomain: td})
	_ = br.Publish(ctx, &bundle.Bundle{Version: 1, TrustDomain: td}) // older: ignored
	if b, _ := br.Current(); b.Version != 2 {
		t.Fatalf("current version %d", b.Version)
	}
	w1.Ack(2)
	w2.Ack(7) // never served: ignored
	wait := func(want bundle.Distribution) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, err := bundle.ReadDistribution(ctx, cli, 2)
			if err == nil && d == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("distribution %+v (%v), want %+v", d, err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait(bundle.Distribution{Replicas: 1, ReplicasCurrent: 1, Watchers: 2, WatchersAcked: 1})
	w2.Ack(2)
	wait(bundle.Distribution{Replicas: 1, ReplicasCurrent: 1, Watchers: 2, WatchersAcked: 2})
	w2.Close()
	wait(bundle.Distribution{Replicas: 1, ReplicasCurrent: 1, Watchers: 1, WatchersAcked: 1})

	// A stopped replica's report goes away.
	cancel()
	<-done
	if d, _ := bundle.ReadDistribution(ctx, cli, 2); d.Replicas != 0 {
		t.Fatalf("report of a stopped replica remains: %+v", d)
	}
}
