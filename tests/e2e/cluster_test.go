//go:build e2e

package e2e

import (
	"encoding/json"
	"testing"

	"github.com/ambitmesh/ambit/pkg/presence"
)

// TestClusterListsReplicas: `ambitctl cluster` finds every config replica
// through NATS micro, with its version, address and status.
func TestClusterListsReplicas(t *testing.T) {
	bin := BinDir(t)
	s := Stack(t)
	replicas := ConfigReplicas(t, bin, s, 2)
	ca, _ := caForTest(t, bin, s)
	r := RunAmbitctl(t, bin, "cluster", "--nats-url="+s.NATSURL(), "-o", "json")
	if r.Code != 0 {
		t.Fatalf("ambitctl cluster: %s", r.Stderr)
	}
	var ms []presence.Member
	if err := json.Unmarshal([]byte(r.Stdout), &ms); err != nil {
		t.Fatalf("%v: %s", err, r.Stdout)
	}
	found := map[string]bool{}
	for _, m := range ms {
		if m.Component == "config" && m.Version != "" && len(m.Stats) > 0 {
			found[m.Address] = true
		}
	}
	caListed := false
	for _, m := range ms {
		caListed = caListed || m.Component == "ca" && m.Address == ca.Addr("grpc")
	}
	if !caListed {
		t.Errorf("CA replica not listed: %s", r.Stdout)
	}
	for _, p := range replicas {
		if !found[p.Addr("grpc")] {
			t.Errorf("replica %s (%s) not listed: %s", p.Name, p.Addr("grpc"), r.Stdout)
		}
	}
	if r := RunAmbitctl(t, bin, "cluster", "--nats-url="+s.NATSURL()); r.Code != 0 || len(r.Stdout) == 0 {
		t.Fatalf("table: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
}
