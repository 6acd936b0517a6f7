package presence

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/devstack"
)

func TestRegisterAndDiscover(t *testing.T) {
	ctx := context.Background()
	s, err := devstack.Start(ctx, devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, r := range []Replica{
		{Info: buildinfo.Info{Component: "xds", Version: "v0.1.0", Commit: "abc"}, Replica: "xds-1", Address: "10.0.0.2:15010", Stats: func() any { return map[string]int{"streams": 7} }},
		{Info: buildinfo.Info{Component: "config", Version: "devel"}, Replica: "config-a", Address: "10.0.0.1:15030"},
	} {
		svc, err := Register(nc, r)
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Stop()
	}
	client, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ms, err := Discover(ctx, client, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Component != "config" || ms[1].Component != "xds" {
		t.Fatalf("members %+v", ms)
	}
	x := ms[1]
	var st map[string]int
	if x.Replica != "xds-1" || x.Version != "v0.1.0" || x.Address != "10.0.0.2:15010" || json.Unmarshal(x.Stats, &st) != nil || st["streams"] != 7 {
		t.Fatalf("xds member %+v (%s)", x, x.Stats)
	}
}
