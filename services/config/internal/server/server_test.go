package server_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/pkg/proxystatus"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"
	statusv1 "github.com/ambitmesh/ambit/proto/ambit/status/v1"
	"github.com/ambitmesh/ambit/services/config/internal/server"
	"github.com/ambitmesh/ambit/services/config/internal/store"
	"github.com/ambitmesh/ambit/services/config/internal/watchhub"
)

// world is one config API over real TLS with callers of every kind.
type world struct {
	t       *testing.T
	ca      *spiffetest.CA
	addr    string
	tracker *proxystatus.Tracker
	stack   *devstack.Stack
	etcd    *clientv3.Client
	feed    *feedRig // nil unless asked for
}

// worldOptions: with publishers > 0 the world runs the change feed (that
// many leader candidates) and serves Watch from a watch hub.
type worldOptions struct {
	publishers int
	hub        watchhub.Options
}

func newWorld(t *testing.T) *world { return newWorldWith(t, worldOptions{}) }

func newWorldWith(t *testing.T, o worldOptions) *world {
	t.Helper()
	stack, err := devstack.Start(context.Background(), devstack.Options{Etcd: devstack.EtcdOptions{UnsafeNoFsync: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Stop() })
	etcd, err := clientv3.New(clientv3.Config{Endpoints: stack.EtcdEndpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	st, err := store.New(store.Options{Etcd: etcd})
	if err != nil {
		t.Fatal(err)
	}
	var feed *feedRig
	var hub *watchhub.Hub
	if o.publishers > 0 {
		feed = startFeed(t, stack, st, o.publishers, o.hub)
		hub = feed.hub
	}
	tracker := proxystatus.NewTracker(proxystatus.TrackerOptions{})
	api, err := server.New(server.Options{Store: st, Watch: hub, Distribution: tracker})
	if err != nil {
		t.Fatal(err)
	}
	td := spiffe.DefaultTrustDomain()
	ca := spiffetest.NewCA(t, td)
	src := ca.Source(t, must(spiffe.NewControlPlane(td, spiffe.ComponentConfig)))
	authorize := spiffe.AuthorizeAnyOf(spiffe.AuthorizeAdmins(td), spiffe.AuthorizeNodes(td), spiffe.AuthorizeComponents(td, spiffe.KnownComponents()...))
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(spiffe.ServerConfig(src, authorize))))
	configv1.RegisterConfigServiceServer(srv, api)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return &world{t: t, ca: ca, addr: lis.Addr().String(), tracker: tracker, stack: stack, etcd: etcd, feed: feed}
}

func (w *world) client(id spiffe.Identity) configv1.ConfigServiceClient {
	w.t.Helper()
	td := spiffe.DefaultTrustDomain()
	src := w.ca.Source(w.t, id)
	tlsCfg := spiffe.ClientConfig(src, spiffe.AuthorizeComponents(td, spiffe.ComponentConfig))
	conn, err := grpc.NewClient(w.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { conn.Close() })
	return configv1.NewConfigServiceClient(conn)
}

func mustApply(t *testing.T, c configv1.ConfigServiceClient, manifest string) *configv1.ApplyResponse {
	t.Helper()
	resp, err := c.Apply(context.Background(), &configv1.ApplyRequest{Manifest: []byte(manifest)})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return resp
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(err.Error(), substr) {
		t.Fatalf("got %v, want %s containing %q", err, code, substr)
	}
}

const pod = `
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: demo}
spec:
  nodeName: %s
  serviceAccountName: sa
  containers: [{name: app, image: echo}]
`

func podManifest(name, node string) string { return fmt.Sprintf(pod, name, node) }

func must(id spiffe.Identity, err error) spiffe.Identity {
	if err != nil {
		panic(err)
	}
	return id
}

func TestNodeAuthorization(t *testing.T) {
	w := newWorld(t)
	td := spiffe.DefaultTrustDomain()
	admin := w.client(must(spiffe.NewAdmin(td, "")))
	nodeA := w.client(must(spiffe.NewNode(td, "node-a")))
	ctx := context.Background()

	mustApply(t, admin, "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n")
	mustApply(t, admin, podManifest("on-a", "node-a"))
	mustApply(t, admin, podManifest("on-b", "node-b"))
	ref := func(name string) *configv1.ObjectRef {
		return &configv1.ObjectRef{Kind: "Pod", Namespace: "demo", Name: name}
	}

	// A node cannot create a pod, nor change a pod's spec.
	_, err := nodeA.Apply(ctx, &configv1.ApplyRequest{Manifest: []byte(podManifest("new", "node-a"))})
	wantCode(t, err, codes.PermissionDenied, "may not apply")
	_, err = nodeA.Apply(ctx, &configv1.ApplyRequest{Manifest: []byte(strings.Replace(podManifest("on-a", "node-a"), "image: echo", "image: evil", 1))})
	wantCode(t, err, codes.PermissionDenied, "may not apply")
	_, err = nodeA.Delete(ctx, &configv1.DeleteRequest{Ref: ref("on-a")})
	wantCode(t, err, codes.PermissionDenied, "may not delete")

	// It may report the status of its own pod, but not of another node's.
	okStatus := []byte(`{"phase":"Running","podIP":"10.251.1.2","podIPs":[{"ip":"10.251.1.2"}]}`)
	resp, err := nodeA.UpdateStatus(ctx, &configv1.UpdateStatusRequest{Ref: ref("on-a"), Status: okStatus})
	if err != nil {
		t.Fatalf("node-a updating its own pod: %v", err)
	}
	if !strings.Contains(string(resp.GetObject()), `"generation":1`) {
		t.Fatalf("status update changed the generation: %s", resp.GetObject())
	}
	_, err = nodeA.UpdateStatus(ctx, &configv1.UpdateStatusRequest{Ref: ref("on-b"), Status: okStatus})
	wantCode(t, err, codes.PermissionDenied, `assigned to node "node-b"`)
	// Nor the status of anything that is not a pod.
	_, err = nodeA.UpdateStatus(ctx, &configv1.UpdateStatusRequest{Ref: &configv1.ObjectRef{Kind: "Namespace", Name: "demo"}, Status: []byte(`{}`)})
	wantCode(t, err, codes.PermissionDenied, "may not update the status of Namespace")

	// Reading is allowed to nodes.
	if _, err := nodeA.Get(ctx, &configv1.GetRequest{Ref: ref("on-b")}); err != nil {
		t.Fatalf("node reading a pod: %v", err)
	}
}

func TestWorkloadIdentityIsRefused(t *testing.T) {
	w := newWorld(t)
	td := spiffe.DefaultTrustDomain()
	wl := w.client(must(spiffe.NewWorkload(td, "demo", "sa")))
	_, err := wl.Get(context.Background(), &configv1.GetRequest{Ref: &configv1.ObjectRef{Kind: "Namespace", Name: "demo"}})
	if err == nil {
		t.Fatal("a workload identity reached the config API")
	}
}

func TestValidationErrorsNameTheField(t *testing.T) {
	w := newWorld(t)
	admin := w.client(must(spiffe.NewAdmin(spiffe.DefaultTrustDomain(), "")))
	mustApply(t, admin, "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n")
	_, err := admin.Apply(context.Background(), &configv1.ApplyRequest{Manifest: []byte(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: demo}
spec:
  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.0/8", "10.0.0.0/33"]
`)})
	wantCode(t, err, codes.InvalidArgument, `spec.rules[0].from[0].source.ipBlocks[1]`)
	var br *errdetails.BadRequest
	for _, d := range status.Convert(err).Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	if br == nil || len(br.FieldViolations) != 1 || br.FieldViolations[0].Field != "spec.rules[0].from[0].source.ipBlocks[1]" {
		t.Fatalf("field violations = %v", br)
	}
	// Nothing was stored.
	_, err = admin.Get(context.Background(), &configv1.GetRequest{Ref: &configv1.ObjectRef{Kind: "AuthorizationPolicy", Namespace: "demo", Name: "bad"}})
	wantCode(t, err, codes.NotFound, "not found")
}

func TestApplyDefaultNamespaceAndResults(t *testing.T) {
	w := newWorld(t)
	admin := w.client(must(spiffe.NewAdmin(spiffe.DefaultTrustDomain(), "")))
	mustApply(t, admin, "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n")
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: echo}\nspec: {ports: [{port: 80}]}\n"
	r, err := admin.Apply(context.Background(), &configv1.ApplyRequest{Manifest: []byte(svc), DefaultNamespace: "demo"})
	if err != nil || r.GetResult() != configv1.ApplyResult_APPLY_RESULT_CREATED {
		t.Fatalf("apply with default namespace: %v %v", r.GetResult(), err)
	}
	r, err = admin.Apply(context.Background(), &configv1.ApplyRequest{Manifest: []byte(svc), DefaultNamespace: "demo"})
	if err != nil || r.GetResult() != configv1.ApplyResult_APPLY_RESULT_UNCHANGED {
		t.Fatalf("re-apply: %v %v", r.GetResult(), err)
	}
	_, err = admin.Apply(context.Background(), &configv1.ApplyRequest{Manifest: []byte(svc)})
	wantCode(t, err, codes.InvalidArgument, "metadata.namespace")
	_, err = admin.Apply(context.Background(), &configv1.ApplyRequest{Manifest: []byte(svc), DefaultNamespace: "missing"})
	wantCode(t, err, codes.NotFound, `namespace "missing"`)
	list, err := admin.List(context.Background(), &configv1.ListRequest{Ref: &configv1.ObjectRef{Kind: "service"}})
	if err != nil || len(list.GetObjects()) != 1 {
		t.Fatalf("list services: %d, %v", len(list.GetObjects()), err)
	}
}

func TestWatchStreamsChangesAfterRevision(t *testing.T) {
	w := newWorldWith(t, worldOptions{publishers: 1})
	admin := w.client(must(spiffe.NewAdmin(spiffe.DefaultTrustDomain(), "")))
	ns := mustApply(t, admin, "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n")
	var rv struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(ns.GetObject(), &rv); err != nil {
		t.Fatal(err)
	}
	after, _ := strconv.ParseInt(rv.Metadata.ResourceVersion, 10, 64)
	mustApply(t, admin, "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: demo}\nspec: {ports: [{port: 80}]}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := admin.Watch(ctx, &configv1.WatchRequest{Ref: &configv1.ObjectRef{Kind: "Service"}, AfterRevision: after})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEvents()) != 1 || resp.GetEvents()[0].GetType() != configv1.WatchEventType_WATCH_EVENT_TYPE_ADDED ||
		!strings.Contains(string(resp.GetEvents()[0].GetObject()), `"name":"a"`) {
		t.Fatalf("first watch response = %v", resp)
	}
}

func TestStatusReportsDistribution(t *testing.T) {
	w := newWorld(t)
	admin := w.client(must(spiffe.NewAdmin(spiffe.DefaultTrustDomain(), "")))
	mustApply(t, admin, "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n")
	resp := mustApply(t, admin, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: demo}\nspec: {action: DENY, rules: [{from: [{source: {namespaces: [evil]}}]}]}\n")
	var obj struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	json.Unmarshal(resp.GetObject(), &obj)
	rev, _ := strconv.ParseInt(obj.Metadata.ResourceVersion, 10, 64)
	w.tracker.Ingest(&statusv1.ProxyReportBatch{Replica: "xds-0", Sequence: 1, Full: true, Reports: []*statusv1.ProxyReport{
		{ProxyId: "ztunnel~node-a", AckedRevision: rev},
		{ProxyId: "ztunnel~node-b", AckedRevision: rev - 1},
	}})
	ref := &configv1.ObjectRef{Kind: "AuthorizationPolicy", Namespace: "demo", Name: "p"}
	st, err := admin.Status(context.Background(), &configv1.StatusRequest{Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetRevision() != rev || st.GetProxiesTotal() != 2 || st.GetProxiesConverged() != 1 || len(st.GetPending()) != 1 || st.GetPending()[0].GetProxyId() != "ztunnel~node-b" {
		t.Fatalf("status = %v", st)
	}
}

// TestCATrustBundleAuthorization: the CA may create and update the
// ClusterTrustBundles of its own signer, ambit.io/<td>, and nothing else;
// nobody but admins and the CA may apply.
func TestCATrustBundleAuthorization(t *testing.T) {
	w := newWorld(t)
	td := spiffe.DefaultTrustDomain()
	admin := w.client(must(spiffe.NewAdmin(td, "")))
	ca := w.client(must(spiffe.NewControlPlane(td, spiffe.ComponentCA)))
	xds := w.client(must(spiffe.NewControlPlane(td, spiffe.ComponentXDS)))
	node := w.client(must(spiffe.NewNode(td, "node-a")))
	root := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.ca.Root().Raw}))
	bundle := func(name, signer, version string) string {
		m := fmt.Sprintf("apiVersion: certificates.k8s.io/v1\nkind: ClusterTrustBundle\nmetadata:\n  name: %s\n  annotations: {ambit.io/bundle-version: %q}\nspec:\n", name, version)
		if signer != "" {
			m += "  signerName: " + signer + "\n"
		}
		return m + "  trustBundle: |\n    " + strings.ReplaceAll(strings.TrimSpace(root), "\n", "\n    ") + "\n"
	}
	own := bundle("ambit.io:cluster.local:bundle", "ambit.io/cluster.local", "1")
	mustApply(t, admin, "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n")

	tests := []struct {
		name     string
		client   configv1.ConfigServiceClient
		manifest string
		want     configv1.ApplyResult
		code     codes.Code
		substr   string
	}{
		{"the CA creates its bundle", ca, own, configv1.ApplyResult_APPLY_RESULT_CREATED, codes.OK, ""},
		{"and re-applies it unchanged", ca, own, configv1.ApplyResult_APPLY_RESULT_UNCHANGED, codes.OK, ""},
		{"and updates it", ca, bundle("ambit.io:cluster.local:bundle", "ambit.io/cluster.local", "2"), configv1.ApplyResult_APPLY_RESULT_CONFIGURED, codes.OK, ""},
		{"the CA cannot apply a Service", ca, "apiVersion: v1\nkind: Service\nmetadata: {name: evil, namespace: demo}\nspec: {ports: [{port: 80}]}\n",
			0, codes.PermissionDenied, "may apply only ClusterTrustBundles, not Service"},
		{"nor another signer's bundle", ca, bundle("example.com:corp:roots", "example.com/corp", "1"), 0, codes.PermissionDenied, `of signer "ambit.io/cluster.local", not "example.com/corp"`},
		{"nor another trust domain's", ca, bundle("ambit.io:other.td:bundle", "ambit.io/other.td", "1"), 0, codes.PermissionDenied, `not "ambit.io/other.td"`},
		{"nor a bundle without a signer", ca, bundle("corp-roots", "", "1"), 0, codes.PermissionDenied, `not ""`},
		{"a node cannot apply the bundle", node, own, 0, codes.PermissionDenied, "may not apply configuration"},
		{"nor can another component", xds, own, 0, codes.PermissionDenied, "may not apply configuration"},
		{"an admin may apply any signer's bundle", admin, bundle("example.com:corp:roots", "example.com/corp", "1"), configv1.ApplyResult_APPLY_RESULT_CREATED, codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.client.Apply(context.Background(), &configv1.ApplyRequest{Manifest: []byte(tt.manifest)})
			if tt.code != codes.OK {
				wantCode(t, err, tt.code, tt.substr)
				return
			}
			if err != nil || resp.GetResult() != tt.want {
				t.Fatalf("apply: %v, %v; want %v", resp.GetResult(), err, tt.want)
			}
		})
	}

	// What the CA wrote is what it last applied; the refused writes left
	// nothing behind.
	got, err := admin.Get(context.Background(), &configv1.GetRequest{Ref: &configv1.ObjectRef{Kind: "ClusterTrustBundle", Name: "ambit.io:cluster.local:bundle"}})
	if err != nil || !strings.Contains(string(got.GetObject()), `"ambit.io/bundle-version":"2"`) {
		t.Fatalf("stored bundle: %s, %v", got.GetObject(), err)
	}
	_, err = admin.Get(context.Background(), &configv1.GetRequest{Ref: &configv1.ObjectRef{Kind: "Service", Namespace: "demo", Name: "evil"}})
	wantCode(t, err, codes.NotFound, "not found")
}
