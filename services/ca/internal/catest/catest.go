// Package catest holds test helpers shared by the CA's packages.
package catest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/ambitmesh/ambit/pkg/devstack"
)

// LeakOptions ignore goroutines that the etcd server and gRPC libraries
// start once per process.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	}
}

// Etcd starts a devstack and returns a client of its etcd; both stop at
// cleanup.
func Etcd(t testing.TB) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatalf("devstack: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Stop(); err != nil {
			t.Errorf("stop devstack: %v", err)
		}
	})
	cli, err := clientv3.New(clientv3.Config{Endpoints: st.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
