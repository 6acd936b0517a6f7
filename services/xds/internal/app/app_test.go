package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/nats-io/nats.go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ambitmesh/ambit/pkg/buildinfo"
	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/pkg/proxystatus"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	"github.com/ambitmesh/ambit/pkg/telemetry"
	"github.com/ambitmesh/ambit/services/xds/internal/translate"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

const waitTimeout = 30 * time.Second

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
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

// writePEM writes the xds replica's certificate, key and bundle.
func writePEM(t *testing.T, ca *spiffetest.CA, id spiffe.Identity) (cert, key, bundle string) {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := ca.MintSVID(t, id).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	bundlePEM, err := ca.Bundle().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cert, key, bundle = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "bundle.pem")
	for p, b := range map[string][]byte{cert: certPEM, key: keyPEM, bundle: bundlePEM} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key, bundle
}

// put writes an object as config would (JSON under its key) and returns
// the etcd revision, which is the object's resourceVersion.
func put(t *testing.T, etcd *clientv3.Client, group, kind, ns, name, js string) int64 {
	t.Helper()
	if ns == "" {
		ns = changefeed.ClusterScoped
	}
	key := changefeed.ResourceRef{Group: group, Kind: kind, Namespace: ns, Name: name}.Key()
	resp, err := etcd.Put(context.Background(), key, js)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func pod(name, ip, app string) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":"apps","labels":{"app":%q}},
"spec":{"nodeName":"node-a","serviceAccountName":"api"},"status":{"phase":"Running","podIPs":[{"ip":%q}]}}`, name, app, ip)
}

// TestReplicaEndToEnd runs a replica against an embedded etcd and NATS
// with a change-feed publisher standing in for config's leader: a ztunnel
// gets the translated workloads, its ACKs reach a distribution-status
// Tracker (what config's Status API and `ambitctl wait --for=converged`
// read) through NATS, the admin endpoints describe it, and the push span
// continues the feed event's trace.
func TestReplicaEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stack, err := devstack.Start(ctx, devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Stop()
	etcd, err := clientv3.New(clientv3.Config{Endpoints: stack.EtcdEndpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	nc, err := nats.Connect(stack.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// The feed: a publisher as config's leader runs it.
	feed, err := changefeed.NewPublisher(changefeed.PublisherOptions{Etcd: etcd, NATS: nc, ID: "config-test", SessionTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = feed.Run(ctx) }()
	put(t, etcd, "core", "Namespace", "", "apps", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"apps","labels":{"istio.io/dataplane-mode":"ambient"}}}`)
	rev1 := put(t, etcd, "core", "Pod", "apps", "api-1", pod("api-1", "10.7.0.10", "api"))

	// The replica.
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	ca := spiffetest.NewCA(t, td)
	xdsID, _ := spiffe.NewControlPlane(td, spiffe.ComponentXDS)
	cert, key, bundle := writePEM(t, ca, xdsID)
	cfg := DefaultConfig()
	cfg.ListenAddr, cfg.AdminAddr, cfg.ReplicaID = "127.0.0.1:0", "127.0.0.1:0", "xds-test"
	cfg.CertFile, cfg.KeyFile, cfg.BundleFile = cert, key, bundle
	cfg.Etcd.Endpoints, cfg.NATS.URL = stack.EtcdEndpoints(), stack.NATSURL()
	cfg.Debounce, cfg.StatusInterval, cfg.StatusFullInterval = 10*time.Millisecond, 20*time.Millisecond, 500*time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(ctx, telemetry.Options{
		Component: Component, LogOutput: io.Discard, LookupEnv: func(string) (string, bool) { return "", false },
		SpanProcessors: []sdktrace.SpanProcessor{spans},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	r, err := newReplica(cfg, buildinfo.Info{Component: Component, Version: "v0.0.0-test"}, tel)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	runErr := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); runErr <- r.run(ctx) }()
	admin := "http://" + r.adminLn.Addr().String()
	eventually(t, "ready", func() error { return httpGet(admin+"/readyz", nil) })

	// Config's side of distribution status.
	tracker := proxystatus.NewTracker(proxystatus.TrackerOptions{})
	wg.Add(1)
	go func() { defer wg.Done(); _ = tracker.Run(ctx, nc) }()

	// A ztunnel of node-a.
	conn, err := grpc.NewClient(r.lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(
		spiffe.ClientConfig(ca.Source(t, mustNode(t, td, "node-a")), spiffe.AuthorizeIdentity(xdsID)))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "ztunnel~node-a"}, TypeUrl: translate.AddressTypeURL}); err != nil {
		t.Fatal(err)
	}
	recv := func(want string) *discovery.DeltaDiscoveryResponse {
		t.Helper()
		for {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range resp.GetResources() {
				if x.GetName() == want {
					return resp
				}
			}
			// An earlier state (the feed may deliver in steps): ACK, wait on.
			if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	converged := func(rev int64) func() error {
		return func() error {
			d := tracker.Status(rev)
			if d.Total != 1 || !d.Done() {
				return fmt.Errorf("revision %d: %d/%d converged, pending %v", rev, d.Converged, d.Total, d.Pending)
			}
			return nil
		}
	}

	resp := recv("Kubernetes//Pod/apps/api-1")
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "wait --for=converged on the pod", converged(rev1))

	// A change: pending until the proxy ACKs it, converged after.
	rev2 := put(t, etcd, "core", "Pod", "apps", "api-2", pod("api-2", "10.7.0.11", "api"))
	resp = recv("Kubernetes//Pod/apps/api-2")
	if d := tracker.Status(rev2); d.Done() {
		t.Fatalf("converged before the ACK: %+v", d)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "wait --for=converged on the change", converged(rev2))
	if p := tracker.Proxies(); len(p) != 1 || p[0].ID != "ztunnel~node-a" || p[0].Replica != "xds-test" {
		t.Fatalf("tracker proxies: %+v", p)
	}

	// Admin endpoints.
	var syncz struct {
		Proxies []struct {
			ID            string `json:"id"`
			AckedRevision int64  `json:"ackedRevision"`
		} `json:"proxies"`
	}
	if err := httpGet(admin+"/debug/syncz", &syncz); err != nil || len(syncz.Proxies) != 1 || syncz.Proxies[0].AckedRevision != rev2 {
		t.Fatalf("syncz: %+v %v", syncz, err)
	}
	var dump struct {
		Types map[string][]struct {
			Name string `json:"name"`
		} `json:"types"`
	}
	if err := httpGet(admin+"/debug/config_dump?proxy=ztunnel~node-a", &dump); err != nil || len(dump.Types[translate.AddressTypeURL]) < 2 {
		t.Fatalf("config dump: %+v %v", dump, err)
	}
	var metrics string
	if err := httpGet(admin+"/metrics", &metrics); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"ambit_xds_pushes_total", "ambit_xds_convergence_seconds", "ambit_xds_push_latency_seconds", "ambit_xds_streams", "ambit_xds_resources"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	// The push of the change continues the feed event's trace and ended
	// with the ACK.
	eventually(t, "push span", func() error {
		applies := map[string]bool{}
		for _, s := range spans.Ended() {
			if s.Name() == "changefeed.apply" {
				applies[s.SpanContext().SpanID().String()] = true
			}
		}
		for _, s := range spans.Ended() {
			if s.Name() == "xds.push" && applies[s.Parent().SpanID().String()] {
				return nil
			}
		}
		return fmt.Errorf("no xds.push span parented on a changefeed.apply span among %d spans", len(spans.Ended()))
	})

	scancel()
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}

func mustNode(t *testing.T, td spiffeid.TrustDomain, node string) spiffe.Identity {
	t.Helper()
	id, err := spiffe.NewNode(td, node)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// httpGet fetches url and decodes JSON into v (a *string takes the body).
func httpGet(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	switch v := v.(type) {
	case nil:
		return nil
	case *string:
		*v = string(b)
		return nil
	default:
		return json.Unmarshal(b, v)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := func() *Config {
		c := DefaultConfig()
		c.CertFile, c.KeyFile, c.BundleFile = "c", "k", "b"
		return c
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // substring of the error; empty: valid
	}{
		{"defaults with TLS files", func(*Config) {}, ""},
		{"no TLS", func(c *Config) { c.CertFile = "" }, "certificate file is required"},
		{"bad listen address", func(c *Config) { c.ListenAddr = "nope" }, "listen-addr"},
		{"negative debounce", func(c *Config) { c.Debounce = -1 }, "debounce"},
		{"tiny responses", func(c *Config) { c.MaxResponseBytes = 10 }, "max-response-bytes"},
		{"full before delta", func(c *Config) { c.StatusFullInterval = time.Millisecond }, "status-full-interval"},
		{"bad trust domain", func(c *Config) { c.TrustDomain = "Not A Domain" }, "trust-domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.change(c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
