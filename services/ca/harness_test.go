package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	clientv3 "go.etcd.io/etcd/client/v3"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	istioca "istio.io/api/security/v1alpha1"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	"github.com/ambitmesh/ambit/pkg/devstack"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"

	"github.com/ambitmesh/ambit/services/ca"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

var td = spiffe.DefaultTrustDomain()

// harness is a devstack with a change feed publisher and CA replicas.
type harness struct {
	t     testing.TB
	stack *devstack.Stack
	etcd  *clientv3.Client
	nc    *nats.Conn
	kek   string

	pubMu     sync.Mutex
	pubCancel context.CancelFunc
	pubDone   chan struct{}

	logs    *syncBuffer
	metrics *sdkmetric.ManualReader
	spans   *tracetest.SpanRecorder
	mp      *sdkmetric.MeterProvider
	tp      *sdktrace.TracerProvider
	offset  *clockOffset
}

func newHarness(t testing.TB) *harness {
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
	etcd, err := clientv3.New(clientv3.Config{Endpoints: st.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	nc, err := nats.Connect(st.NATSURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	h := &harness{t: t, stack: st, etcd: etcd, nc: nc, kek: keystore.NewKEK(), logs: &syncBuffer{},
		metrics: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder(), offset: &clockOffset{}}
	h.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.metrics))
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	t.Cleanup(func() {
		_ = h.mp.Shutdown(context.Background())
		_ = h.tp.Shutdown(context.Background())
	})
	h.startPublisher()
	t.Cleanup(h.stopPublisher)
	return h
}

// startPublisher runs the change feed leader (config's job in production).
func (h *harness) startPublisher() {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	pub, err := changefeed.NewPublisher(changefeed.PublisherOptions{Etcd: h.etcd, NATS: h.nc, SessionTTL: 2 * time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.pubCancel, h.pubDone = cancel, make(chan struct{})
	done := h.pubDone
	go func() { defer close(done); _ = pub.Run(ctx) }()
}

// stopPublisher stops it and waits: from then on the feed carries nothing.
func (h *harness) stopPublisher() {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	if h.pubCancel != nil {
		h.pubCancel()
		<-h.pubDone
		h.pubCancel = nil
	}
}

func (h *harness) config(replica string) ca.Config {
	cfg := *ca.DefaultConfig()
	cfg.EtcdEndpoints = h.stack.EtcdEndpoints()
	cfg.NATSURL = h.stack.NATSURL()
	cfg.KEK = h.kek
	cfg.ReplicaID = replica
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 10 * time.Second
	return cfg
}

type replica struct {
	*ca.CA
	cancel context.CancelFunc
	done   chan error
}

// newCA builds a replica without failing the test (for concurrent use).
func (h *harness) newCA(name string, mod func(*ca.Config, *ca.Options)) (*ca.CA, error) {
	cfg := h.config(name)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := ca.Options{
		Logger:         slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", name),
		TracerProvider: h.tp, MeterProvider: h.mp, Listener: lis, Now: h.offset.now,
	}
	if mod != nil {
		mod(&cfg, &o)
	}
	if err := cfg.Validate(); err != nil {
		lis.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := ca.New(ctx, cfg, o)
	if err != nil {
		lis.Close()
		return nil, err
	}
	return c, nil
}

// run serves c until cleanup.
func (h *harness) run(c *ca.CA) *replica {
	rctx, rcancel := context.WithCancel(context.Background())
	r := &replica{CA: c, cancel: rcancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(rctx) }()
	h.t.Cleanup(func() { r.stop(h.t) })
	return r
}

// startCA starts a replica and stops it at cleanup.
func (h *harness) startCA(name string, mod func(*ca.Config, *ca.Options)) *replica {
	h.t.Helper()
	c, err := h.newCA(name, mod)
	if err != nil {
		h.t.Fatalf("ca.New: %v", err)
	}
	return h.run(c)
}

func (r *replica) stop(t testing.TB) {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("replica run: %v", err)
		}
		close(r.done)
	case <-time.After(30 * time.Second):
		t.Errorf("replica did not stop")
	}
}

// bundle is the replica's current trust bundle.
func (r *replica) bundle(t testing.TB) *x509bundle.Bundle {
	b, err := r.Source().GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dial connects to a replica presenting svid (nil: none) and verifying the
// CA's identity against bundle; token, if set, is sent as a bearer token.
func dial(t testing.TB, addr string, svid *x509svid.SVID, b *x509bundle.Bundle, token string) *grpc.ClientConn {
	t.Helper()
	src, err := spiffe.NewSource(svid, b)
	if err != nil {
		t.Fatal(err)
	}
	return dialSource(t, addr, src, token)
}

func dialSource(t testing.TB, addr string, src *spiffe.Source, token string) *grpc.ClientConn {
	t.Helper()
	caID, _ := spiffe.NewControlPlane(td, spiffe.ComponentCA)
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(caID))))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerCreds(token)))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerCreds) RequireTransportSecurity() bool { return true }

// admin writes admin credentials with issue-admin and returns a connection.
func (h *harness) admin(r *replica) *grpc.ClientConn {
	h.t.Helper()
	cfg := ca.DefaultIssueAdminConfig()
	cfg.EtcdEndpoints = h.stack.EtcdEndpoints()
	cfg.KEK = h.kek
	cfg.Out = h.t.TempDir()
	cfg.Name = "tester"
	if err := cfg.Validate(); err != nil {
		h.t.Fatal(err)
	}
	files, err := ca.IssueAdmin(context.Background(), cfg)
	if err != nil {
		h.t.Fatalf("IssueAdmin: %v", err)
	}
	src, err := spiffe.NewSourceFromFiles(files, td)
	if err != nil {
		h.t.Fatal(err)
	}
	return dialSource(h.t, r.Addr().String(), src, "")
}

// key is a fresh P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// csrFor returns a PEM CSR with the given URI SANs signed by key.
func csrFor(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest, uris ...string) string {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// svidFromChain assembles an SVID from a PEM chain (root last, dropped).
func svidFromChain(t testing.TB, chain []string, key crypto.Signer) *x509svid.SVID {
	t.Helper()
	var certs []*x509.Certificate
	for _, p := range chain {
		cs, err := keystore.ParseCertificates([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, cs...)
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: certs[:len(certs)-1], PrivateKey: key}
}

// joinNode gives node a certificate through a join token.
func (h *harness) joinNode(admin *grpc.ClientConn, r *replica, node string) *x509svid.SVID {
	h.t.Helper()
	ctx := context.Background()
	tok, err := cav1.NewNodeBootstrapServiceClient(admin).CreateJoinToken(ctx, &cav1.CreateJoinTokenRequest{Node: node})
	if err != nil {
		h.t.Fatalf("CreateJoinToken: %v", err)
	}
	key := newKey(h.t)
	conn := dial(h.t, r.Addr().String(), nil, r.bundle(h.t), "")
	resp, err := cav1.NewNodeBootstrapServiceClient(conn).ExchangeJoinToken(ctx, &cav1.ExchangeJoinTokenRequest{
		Token: tok.GetToken(), Csr: csrFor(h.t, key, nil, tok.GetIdentity()),
	})
	if err != nil {
		h.t.Fatalf("ExchangeJoinToken: %v", err)
	}
	return svidFromChain(h.t, resp.GetCertChain(), key)
}

// putPod writes a Pod as the config service would.
func (h *harness) putPod(ns, name, node, sa string) {
	h.t.Helper()
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": ns, "uid": fmt.Sprintf("uid-%s-%s", ns, name)},
		"spec":     map[string]any{"nodeName": node, "serviceAccountName": sa},
		"status":   map[string]any{"phase": "Running", "podIPs": []map[string]string{{"ip": "10.1.0.5"}}},
	}
	raw, _ := json.Marshal(pod)
	key := changefeed.ResourceRef{Group: "core", Kind: "Pod", Namespace: ns, Name: name}.Key()
	if _, err := h.etcd.Put(context.Background(), key, string(raw)); err != nil {
		h.t.Fatal(err)
	}
}

// certFor requests a certificate for identity (impersonated) over conn,
// with a fresh key.
func certFor(ctx context.Context, t testing.TB, conn *grpc.ClientConn, identity string) (*x509svid.SVID, []string, error) {
	return request(ctx, t, conn, identity, identity)
}

// renew requests the caller's own identity, without impersonation.
func renew(ctx context.Context, t testing.TB, conn *grpc.ClientConn, self string) (*x509svid.SVID, []string, error) {
	return request(ctx, t, conn, "", self)
}

func request(ctx context.Context, t testing.TB, conn *grpc.ClientConn, identity, san string) (*x509svid.SVID, []string, error) {
	key := newKey(t)
	req := &istioca.IstioCertificateRequest{Csr: csrFor(t, key, nil, san), ValidityDuration: 3600}
	if identity != "" {
		req.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{"ImpersonatedIdentity": structpb.NewStringValue(identity)}}
	}
	resp, err := istioca.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	return svidFromChain(t, resp.GetCertChain(), key), resp.GetCertChain(), nil
}

// issuedTotal sums ambit_ca_certificates_issued_total.
func (h *harness) counter(name string) int64 {
	var rm metricdata.ResourceMetrics
	if err := h.metrics.Collect(context.Background(), &rm); err != nil {
		h.t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if s, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range s.DataPoints {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// eventually polls cond until it holds or the deadline passes. It waits
// for a state another process reaches (not a fixed sleep).
func eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %s", what, last)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log records containing all of subs.
func (b *syncBuffer) lines(subs ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

type clockOffset struct {
	mu sync.Mutex
	d  time.Duration
}

func (c *clockOffset) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.d)
}

func (c *clockOffset) set(d time.Duration) {
	c.mu.Lock()
	c.d = d
	c.mu.Unlock()
}

var (
	_ = durationpb.New
	_ = spiffeid.TrustDomain{}
)

func keystoreParse(p string) (*x509.Certificate, error) {
	cs, err := keystore.ParseCertificates([]byte(p))
	if err != nil {
		return nil, err
	}
	return cs[0], nil
}

func impersonate(identity string) *structpb.Struct {
	if identity == "" {
		return nil
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{"ImpersonatedIdentity": structpb.NewStringValue(identity)}}
}

func sha(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
