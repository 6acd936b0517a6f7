package authz_test

import (
	"context"
	"encoding/json"
	"testing"

	"go.uber.org/goleak"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/spiffe"

	"github.com/ambitmesh/ambit/services/ca/internal/authz"
	"github.com/ambitmesh/ambit/services/ca/internal/catest"
	"github.com/ambitmesh/ambit/services/ca/internal/fault"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, catest.LeakOptions()...) }

func podJSON(node, sa, phase string) []byte {
	b, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"name": "p"},
		"spec":     map[string]any{"nodeName": node, "serviceAccountName": sa, "futureField": 1},
		"status":   map[string]any{"phase": phase},
	})
	return b
}

func obj(ns, name string, raw []byte) changefeed.Object {
	return changefeed.Object{Ref: changefeed.ResourceRef{Group: "core", Kind: "Pod", Namespace: ns, Name: name}, Value: raw}
}

func TestIndex(t *testing.T) {
	x := authz.NewIndex()
	ctx := context.Background()
	_ = x.Reset(ctx, changefeed.Snapshot{Revision: 5, Objects: []changefeed.Object{
		obj("a", "p1", podJSON("n1", "web", "Running")),
		obj("a", "p2", podJSON("n1", "", "Pending")),
		obj("a", "p3", podJSON("n2", "done", "Succeeded")),
		obj("a", "p4", podJSON("", "unscheduled", "")),
		obj("a", "p5", []byte("not json")),
	}})
	check := func(node, ns, sa string, want bool) {
		t.Helper()
		if got := x.Has(node, ns, sa); got != want {
			t.Errorf("Has(%s, %s, %s) = %v, want %v", node, ns, sa, got, want)
		}
	}
	check("n1", "a", "web", true)
	check("n1", "a", "default", true)
	check("n2", "a", "done", false)
	check("n2", "a", "web", false)
	check("", "a", "unscheduled", false)

	// Rescheduled to another node, then deleted.
	_ = x.Apply(ctx, changefeed.Event{Type: changefeed.EventPut, Object: obj("a", "p1", podJSON("n2", "web", "Running"))})
	check("n1", "a", "web", false)
	check("n2", "a", "web", true)
	_ = x.Apply(ctx, changefeed.Event{Type: changefeed.EventDelete, Object: obj("a", "p1", nil)})
	check("n2", "a", "web", false)
	if x.Pods() != 1 || !x.Synced() {
		t.Errorf("pods %d synced %v", x.Pods(), x.Synced())
	}
}

func TestAuthorizer(t *testing.T) {
	cli := catest.Etcd(t)
	ctx := context.Background()
	put := func(ns, name string, raw []byte) {
		ref := changefeed.ResourceRef{Group: "core", Kind: "Pod", Namespace: ns, Name: name}
		if _, err := cli.Put(ctx, ref.Key(), string(raw)); err != nil {
			t.Fatal(err)
		}
	}
	put("shop", "web-1", podJSON("n1", "web", "Running"))
	put("shop", "api-1", podJSON("n2", "api", "Running"))
	td := spiffe.DefaultTrustDomain()
	a := &authz.Authorizer{Index: authz.NewIndex(), Etcd: cli, TrustDomain: td}
	n1 := spiffe.MustParse("spiffe://cluster.local/ambit/node/n1")
	for _, tt := range []struct {
		caller, requested string
		via, reason       string
	}{
		{n1.String(), n1.String(), authz.ViaSelf, ""},
		{n1.String(), "spiffe://cluster.local/ns/shop/sa/web", authz.ViaEtcd, ""},
		{n1.String(), "spiffe://cluster.local/ns/shop/sa/api", "", authz.ReasonPodNotOnNode},
		{n1.String(), "spiffe://cluster.local/ns/shop/sa/none", "", authz.ReasonNoSuchPod},
		{n1.String(), "spiffe://cluster.local/ambit/node/n2", "", authz.ReasonNotWorkload},
		{n1.String(), "spiffe://cluster.local/ambit/admin", "", authz.ReasonNotWorkload},
		{n1.String(), "spiffe://other.td/ns/shop/sa/web", "", authz.ReasonForeignTrustDomain},
		{"spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/shop/sa/web", authz.ViaSelf, ""},
		{"spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/shop/sa/api", "", authz.ReasonNotSelf},
		{"spiffe://cluster.local/ambit/xds", "spiffe://cluster.local/ns/shop/sa/api", "", authz.ReasonNotSelf},
		{"spiffe://cluster.local/ambit/admin", "spiffe://cluster.local/ns/shop/sa/api", "", authz.ReasonNotSelf},
	} {
		via, err := a.Authorize(ctx, spiffe.MustParse(tt.caller), spiffe.MustParse(tt.requested))
		if tt.reason == "" {
			if err != nil || via != tt.via {
				t.Errorf("%s -> %s: %q, %v; want granted via %s", tt.caller, tt.requested, via, err, tt.via)
			}
			continue
		}
		if fault.KindOf(err) != fault.PermissionDenied || fault.ReasonOf(err) != tt.reason {
			t.Errorf("%s -> %s: %v; want PermissionDenied %s", tt.caller, tt.requested, err, tt.reason)
		}
	}
	// With etcd gone the answer is Unavailable, never a denial.
	_ = cli.Close()
	if _, err := a.Authorize(ctx, n1, spiffe.MustParse("spiffe://cluster.local/ns/shop/sa/none")); fault.KindOf(err) != fault.Unavailable {
		t.Errorf("etcd down: %v, want Unavailable", err)
	}
}
