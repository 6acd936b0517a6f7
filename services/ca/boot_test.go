package ca_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"

	"github.com/ambitmesh/ambit/services/ca"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

// TestConcurrentFirstBoot: replicas started at the same instant on an
// empty etcd agree on one root.
func TestConcurrentFirstBoot(t *testing.T) {
	h := newHarness(t)
	const n = 2
	type result struct {
		c   *ca.CA
		err error
	}
	results := make(chan result, n)
	start := make(chan struct{})
	for i := range n {
		go func() {
			<-start
			c, err := h.newCA([]string{"r1", "r2"}[i], nil)
			results <- result{c, err}
		}()
	}
	close(start)
	var reps []*replica
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatalf("replica: %v", r.err)
		}
		reps = append(reps, h.run(r.c))
	}
	b0, b1 := reps[0].bundle(t).X509Authorities(), reps[1].bundle(t).X509Authorities()
	if len(b0) != 1 || len(b1) != 1 || !b0[0].Equal(b1[0]) {
		t.Fatalf("replicas trust %d and %d roots; want the same single root", len(b0), len(b1))
	}
	resp, err := h.etcd.Get(context.Background(), keystore.StateKey)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("state: %v", err)
	}
	var st keystore.State
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Authorities) != 1 {
		t.Fatalf("stored %d authorities", len(st.Authorities))
	}
	// Both sign under it.
	for _, r := range reps {
		svid, _ := r.Source().GetX509SVID()
		if _, _, err := x509svid.Verify(svid.Certificates, reps[0].bundle(t)); err != nil {
			t.Errorf("replica's serving certificate: %v", err)
		}
	}
	// The private key is sealed: no PEM key in etcd.
	if containsAny(string(resp.Kvs[0].Value), "PRIVATE KEY") {
		t.Fatal("a private key is stored in the clear")
	}
}

func containsAny(s, sub string) bool { return strings.Contains(s, sub) }

// TestOperatorProvidedRoot: root + intermediate files instead of a
// generated root; issued chains are leaf → intermediate → root.
func TestOperatorProvidedRoot(t *testing.T) {
	h := newHarness(t)
	root := spiffetest.NewCA(t, td)
	inter := root.NewIntermediate(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r := h.startCA("r1", func(c *ca.Config, _ *ca.Options) {
		c.SigningCertFile = write("inter.crt", inter.CertificatePEM())
		c.SigningKeyFile = write("inter.key", inter.KeyPEM(t))
		c.RootCertFile = write("root.crt", root.CertificatePEM())
		c.MaxTTL, c.DefaultTTL = 12*time.Hour, 12*time.Hour
	})
	admin := h.admin(r)
	node := h.joinNode(admin, r, "node-a")
	h.putPod("x", "p", "node-a", "sa")
	conn := dial(t, r.Addr().String(), node, root.Bundle(), "")
	svid, chain, err := certFor(context.Background(), t, conn, "spiffe://cluster.local/ns/x/sa/sa")
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 || !mustParse(t, chain[1]).Equal(inter.Certificate()) || !mustParse(t, chain[2]).Equal(root.Certificate()) {
		t.Fatalf("chain of %d, want leaf, intermediate, root", len(chain))
	}
	if _, _, err := x509svid.Verify(svid.Certificates, root.Bundle()); err != nil {
		t.Fatalf("verify against the operator's root: %v", err)
	}
	st, err := cav1.NewRotationServiceClient(admin).GetRotationStatus(context.Background(), &cav1.GetRotationStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if a := st.GetStatus().GetAuthorities(); len(a) != 1 || a[0].GetOrigin() != keystore.OriginOperator {
		t.Fatalf("authorities %v", a)
	}
}

// TestMetrics: issued by kind, denied by reason, latency, root expiry.
func TestMetrics(t *testing.T) {
	h := newHarness(t)
	r := h.startCA("r1", nil)
	admin := h.admin(r)
	node := h.joinNode(admin, r, "node-a")
	h.putPod("x", "p", "node-a", "sa")
	conn := dial(t, r.Addr().String(), node, r.bundle(t), "")
	ctx := context.Background()
	if _, _, err := certFor(ctx, t, conn, "spiffe://cluster.local/ns/x/sa/sa"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := certFor(ctx, t, conn, "spiffe://cluster.local/ns/x/sa/nope"); err == nil {
		t.Fatal("granted a pod that does not exist")
	}
	var rm metricdata.ResourceMetrics
	if err := h.metrics.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			seen[m.Name] = true
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					if m.Name == ca.MetricIssued {
						if k, _ := dp.Attributes.Value("kind"); k.AsString() == "workload" && dp.Value != 1 {
							t.Errorf("workload certificates issued = %d, want 1", dp.Value)
						}
					}
					if m.Name == ca.MetricDenied {
						if k, _ := dp.Attributes.Value("reason"); k.AsString() != "no_such_pod" {
							t.Errorf("denial reason %s", k.AsString())
						}
					}
				}
			case metricdata.Gauge[float64]:
				for _, dp := range d.DataPoints {
					if dp.Value < 9*365*24*3600 {
						t.Errorf("root expires in %.0fs, want about 10 years", dp.Value)
					}
				}
			}
		}
	}
	for _, name := range []string{ca.MetricIssued, ca.MetricDenied, ca.MetricDuration, ca.MetricRootExpiry} {
		if !seen[name] {
			t.Errorf("metric %s not reported", name)
		}
	}
}

// TestIssueAdminBeforeAnyReplica: issue-admin works on an empty etcd (it
// creates the material) and its credentials are an admin's.
func TestIssueAdminBeforeAnyReplica(t *testing.T) {
	h := newHarness(t)
	cfg := ca.DefaultIssueAdminConfig()
	cfg.EtcdEndpoints = h.stack.EtcdEndpoints()
	cfg.KEK = h.kek
	cfg.Out = t.TempDir()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	files, err := ca.IssueAdmin(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(files.KeyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", st.Mode(), err)
	}
	svid, b, err := files.Load(td)
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://cluster.local/ambit/admin" {
		t.Errorf("admin ID %s", svid.ID)
	}
	r := h.startCA("r1", nil)
	if !r.bundle(t).X509Authorities()[0].Equal(b.X509Authorities()[0]) {
		t.Fatal("the replica did not adopt the root issue-admin created")
	}
	src, _ := spiffe.NewSource(svid, b)
	if _, err := cav1.NewRotationServiceClient(dialSource(t, r.Addr().String(), src, "")).GetRotationStatus(context.Background(), &cav1.GetRotationStatusRequest{}); err != nil {
		t.Fatalf("admin call: %v", err)
	}
	// A wrong KEK is refused with a clear error.
	cfg.KEK = keystore.NewKEK()
	if _, err := ca.IssueAdmin(context.Background(), cfg); err == nil || !containsAny(err.Error(), "key-encryption key") {
		t.Fatalf("wrong KEK: %v", err)
	}
}

// TestIssueComponent: issue-admin --component gives a control-plane
// service its serving identity from the same root; bad components are
// refused by name.
func TestIssueComponent(t *testing.T) {
	h := newHarness(t)
	cfg := ca.DefaultIssueAdminConfig()
	cfg.EtcdEndpoints = h.stack.EtcdEndpoints()
	cfg.KEK = h.kek
	cfg.Out = t.TempDir()
	cfg.Component = "config"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	files, err := ca.IssueAdmin(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(files.CertFile) != "config.crt" || filepath.Base(files.KeyFile) != "config.key" {
		t.Fatalf("files %+v", files)
	}
	svid, _, err := files.Load(td)
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID.String() != "spiffe://cluster.local/ambit/config" {
		t.Errorf("component ID %s", svid.ID)
	}
	for _, bad := range []struct{ component, name, want string }{
		{"ca", "", "component"}, {"nope", "", "component"}, {"xds", "alice", "name"},
	} {
		c := *cfg
		c.Component, c.Name = bad.component, bad.name
		if err := c.Validate(); err == nil || !containsAny(err.Error(), bad.want) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
