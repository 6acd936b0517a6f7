package ca_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	istioca "istio.io/api/security/v1alpha1"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"

	"github.com/ambitmesh/ambit/services/ca"
)

// handshake runs a real mTLS handshake between a server presenting srv and
// a client presenting cli, both trusting b, servers accepting only
// workloads, and echoes a byte. It returns the identity each side saw.
func handshake(t *testing.T, srv, cli *x509svid.SVID, b *x509bundle.Bundle) (seenByServer, seenByClient spiffe.Identity, err error) {
	t.Helper()
	srvSrc, _ := spiffe.NewSource(srv, b)
	cliSrc, _ := spiffe.NewSource(cli, b)
	srvID, _ := spiffe.FromID(srv.ID)
	return handshakeSources(t, srvSrc, cliSrc, srvID)
}

func handshakeSources(t *testing.T, srvSrc, cliSrc *spiffe.Source, want spiffe.Identity) (seenByServer, seenByClient spiffe.Identity, err error) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", spiffe.ServerConfig(srvSrc, spiffe.AuthorizeWorkloads(td)))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	type res struct {
		id  spiffe.Identity
		err error
	}
	got := make(chan res, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			got <- res{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			got <- res{err: err}
			return
		}
		id, err := spiffe.PeerIdentity(tc.ConnectionState())
		b := make([]byte, 1)
		if err == nil {
			_, err = io.ReadFull(tc, b)
		}
		if err == nil {
			_, err = tc.Write(b)
		}
		got <- res{id, err}
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), spiffe.ClientConfig(cliSrc, spiffe.AuthorizeIdentity(want)))
	if err != nil {
		<-got
		return spiffe.Identity{}, spiffe.Identity{}, err
	}
	defer conn.Close()
	seenByClient, _ = spiffe.PeerIdentity(conn.ConnectionState())
	if _, err := conn.Write([]byte{42}); err != nil {
		return spiffe.Identity{}, spiffe.Identity{}, err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(conn, b); err != nil {
		<-got
		return spiffe.Identity{}, spiffe.Identity{}, err
	}
	r := <-got
	return r.id, seenByClient, r.err
}

func TestIssueForPodOnNode(t *testing.T) {
	h := newHarness(t)
	r := h.startCA("r1", nil)
	admin := h.admin(r)
	nodeA := h.joinNode(admin, r, "node-a")
	h.putPod("shop", "web-1", "node-a", "web")
	h.putPod("shop", "db-1", "node-a", "")

	if nodeA.ID.String() != "spiffe://cluster.local/ambit/node/node-a" {
		t.Fatalf("node certificate ID = %s", nodeA.ID)
	}
	conn := dial(t, r.Addr().String(), nodeA, r.bundle(t), "")
	ctx := context.Background()

	web, chain, err := certFor(ctx, t, conn, "spiffe://cluster.local/ns/shop/sa/web")
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	// The chain ends with the root, which is the bundle's.
	root := mustParse(t, chain[len(chain)-1])
	if !r.bundle(t).HasX509Authority(root) {
		t.Fatal("the chain's last certificate is not the trust bundle's root")
	}
	leaf := web.Certificates[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/shop/sa/web" ||
		len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 || leaf.IsCA {
		t.Fatalf("leaf SANs %v %v %v, CA %v", leaf.URIs, leaf.DNSNames, leaf.IPAddresses, leaf.IsCA)
	}
	if ttl := leaf.NotAfter.Sub(leaf.NotBefore); ttl < time.Hour || ttl > time.Hour+2*time.Minute {
		t.Errorf("validity %s, want about the requested hour", ttl)
	}
	if id, _, err := x509svid.Verify(web.Certificates, r.bundle(t)); err != nil || id != web.ID {
		t.Fatalf("Verify = %s, %v", id, err)
	}

	// The serviceAccountName-less pod runs as "default".
	db, _, err := certFor(ctx, t, conn, "spiffe://cluster.local/ns/shop/sa/default")
	if err != nil {
		t.Fatalf("default service account: %v", err)
	}

	// A real mTLS handshake between the two workloads.
	seenByServer, seenByClient, err := handshake(t, web, db, r.bundle(t))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if seenByServer.String() != "spiffe://cluster.local/ns/shop/sa/default" || seenByClient.String() != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Errorf("peers saw %s and %s", seenByServer, seenByClient)
	}

	// The workload renews itself with its own certificate.
	wconn := dial(t, r.Addr().String(), web, r.bundle(t), "")
	if _, _, err := renew(ctx, t, wconn, web.ID.String()); err != nil {
		t.Fatalf("workload self-renewal: %v", err)
	}
	// The node renews itself (no impersonation).
	if _, _, err := renew(ctx, t, conn, nodeA.ID.String()); err != nil {
		t.Fatalf("node self-renewal: %v", err)
	}
}

// TestBearerNodeToken: Istio's ztunnel way — TLS without a client
// certificate, "authorization: Bearer <node token>".
func TestBearerNodeToken(t *testing.T) {
	h := newHarness(t)
	r := h.startCA("r1", nil)
	admin := h.admin(r)
	nodeA := h.joinNode(admin, r, "node-a")
	h.putPod("shop", "web-1", "node-a", "web")
	h.putPod("shop", "api-1", "node-b", "api")
	ctx := context.Background()

	conn := dial(t, r.Addr().String(), nodeA, r.bundle(t), "")
	tok, err := cav1.NewNodeBootstrapServiceClient(conn).IssueNodeToken(ctx, &cav1.IssueNodeTokenRequest{Ttl: durationpb.New(48 * time.Hour)})
	if err != nil {
		t.Fatalf("IssueNodeToken: %v", err)
	}
	if exp := tok.GetExpireTime().AsTime(); exp.After(nodeA.Certificates[0].NotAfter) || exp.After(time.Now().Add(24*time.Hour+time.Minute)) {
		t.Errorf("token expires %s: beyond 24h or the node certificate (%s)", exp, nodeA.Certificates[0].NotAfter)
	}

	bconn := dial(t, r.Addr().String(), nil, r.bundle(t), tok.GetToken())
	svid, _, err := certFor(ctx, t, bconn, "spiffe://cluster.local/ns/shop/sa/web")
	if err != nil {
		t.Fatalf("CreateCertificate with bearer token: %v", err)
	}
	if svid.ID.String() != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Errorf("ID %s", svid.ID)
	}
	// The token carries the node's rights and no more.
	if _, _, err := certFor(ctx, t, bconn, "spiffe://cluster.local/ns/shop/sa/api"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("bearer node asking for node-b's pod: %v, want PermissionDenied", err)
	}
	// A token cannot mint a token.
	if _, err := cav1.NewNodeBootstrapServiceClient(bconn).IssueNodeToken(ctx, &cav1.IssueNodeTokenRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("IssueNodeToken with a bearer token: %v, want PermissionDenied", err)
	}
	// Tampered, foreign and absent tokens.
	forged := tok.GetToken()[:len(tok.GetToken())-4] + "AAAA"
	for name, c := range map[string]*grpc.ClientConn{
		"forged":  dial(t, r.Addr().String(), nil, r.bundle(t), forged),
		"garbage": dial(t, r.Addr().String(), nil, r.bundle(t), "not-a-jwt"),
		"none":    dial(t, r.Addr().String(), nil, r.bundle(t), ""),
	} {
		if _, _, err := certFor(ctx, t, c, "spiffe://cluster.local/ns/shop/sa/web"); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s token: %v, want Unauthenticated", name, err)
		}
	}
	// Expired: move the CA's clock past the token's expiry.
	h.offset.set(25 * time.Hour)
	_, _, err = certFor(ctx, t, bconn, "spiffe://cluster.local/ns/shop/sa/web")
	h.offset.set(0)
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v, want Unauthenticated (expired)", err)
	}
}

func TestDenials(t *testing.T) {
	h := newHarness(t)
	r := h.startCA("r1", nil)
	admin := h.admin(r)
	nodeA := h.joinNode(admin, r, "node-a")
	h.putPod("shop", "web-1", "node-a", "web")
	h.putPod("shop", "api-1", "node-b", "api")
	ctx := context.Background()
	conn := dial(t, r.Addr().String(), nodeA, r.bundle(t), "")
	web, _, err := certFor(ctx, t, conn, "spiffe://cluster.local/ns/shop/sa/web")
	if err != nil {
		t.Fatal(err)
	}
	wconn := dial(t, r.Addr().String(), web, r.bundle(t), "")
	key := newKey(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	const webID = "spiffe://cluster.local/ns/shop/sa/web"
	caBit := &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{{
		Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: mustASN1(t, struct{ IsCA bool }{true}),
	}}}

	tests := []struct {
		name     string
		conn     *grpc.ClientConn
		identity string // ImpersonatedIdentity
		csr      string
		code     codes.Code
		msg      string // in the error
		reason   string // in the audit line
		caller   string
	}{
		{"pod on another node", conn, "spiffe://cluster.local/ns/shop/sa/api", "", codes.PermissionDenied,
			"is assigned to node node-a", "pod_not_on_node", "spiffe://cluster.local/ambit/node/node-a"},
		{"pod that does not exist", conn, "spiffe://cluster.local/ns/shop/sa/ghost", "", codes.PermissionDenied,
			`no pod in namespace "shop" runs as service account "ghost"`, "no_such_pod", "node-a"},
		{"foreign trust domain", conn, "spiffe://evil.example/ns/shop/sa/web", "", codes.PermissionDenied,
			`is not in trust domain "cluster.local"`, "foreign_trust_domain", "node-a"},
		{"node identity as workload cert", conn, "spiffe://cluster.local/ambit/node/node-b", "", codes.PermissionDenied,
			"not the node identity", "not_workload", "node-a"},
		{"control-plane identity", conn, "spiffe://cluster.local/ambit/xds", "", codes.PermissionDenied,
			"not the control-plane identity", "not_workload", "node-a"},
		{"workload asking for another", wconn, "spiffe://cluster.local/ns/shop/sa/api", "", codes.PermissionDenied,
			"may obtain only its own certificate", "not_self", webID},
		{"not an Ambit identity", conn, "spiffe://cluster.local/anything/else", "", codes.InvalidArgument,
			"not a valid Ambit identity", "bad_identity", "node-a"},
		{"CSR with two SANs", conn, webID, csrFor(t, key, nil, webID, "spiffe://cluster.local/ns/shop/sa/api"), codes.InvalidArgument,
			"has 2 URI SANs, want exactly one", "csr_san", "node-a"},
		{"CSR SAN not the identity", conn, webID, csrFor(t, key, nil, "spiffe://cluster.local/ns/shop/sa/api"), codes.InvalidArgument,
			"is not the requested identity", "csr_san", "node-a"},
		{"CSR with a DNS SAN", conn, webID, csrFor(t, key, &x509.CertificateRequest{DNSNames: []string{"web.shop"}}, webID), codes.InvalidArgument,
			"only the URI SAN", "csr_san", "node-a"},
		{"CA-bit CSR", conn, webID, csrFor(t, key, caBit, webID), codes.InvalidArgument,
			"requests a CA certificate", "csr_ca", "node-a"},
		{"RSA 1024", conn, webID, csrFor(t, rsaKey, nil, webID), codes.InvalidArgument,
			"RSA key of 1024 bits", "csr_key", "node-a"},
		{"garbage CSR", conn, webID, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", codes.InvalidArgument,
			"invalid CSR", "csr_malformed", "node-a"},
		{"no credentials", dial(t, r.Addr().String(), nil, r.bundle(t), ""), webID, "", codes.Unauthenticated,
			"no client certificate", "no_credentials", "anonymous"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.counter(ca.MetricIssued)
			csr := tt.csr
			if csr == "" {
				csr = csrFor(t, newKey(t), nil, tt.identity)
			}
			req := &istioca.IstioCertificateRequest{Csr: csr, Metadata: impersonate(tt.identity)}
			resp, err := istioca.NewIstioCertificateServiceClient(tt.conn).CreateCertificate(ctx, req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("got %v, want %s containing %q", err, tt.code, tt.msg)
			}
			if resp != nil {
				t.Fatalf("a response came with the error: %v", resp)
			}
			if after := h.counter(ca.MetricIssued); after != before {
				t.Errorf("issued counter moved from %d to %d", before, after)
			}
			if lines := h.logs.lines(`"audit":true`, `"reason":"`+tt.reason+`"`, tt.caller, `"requested":"`+tt.identity); len(lines) == 0 {
				t.Errorf("no audit line with reason %s, caller %s and requested %s", tt.reason, tt.caller, tt.identity)
			}
		})
	}
	if got := h.counter(ca.MetricDenied); got < int64(len(tests)) {
		t.Errorf("denied counter %d, want at least %d", got, len(tests))
	}
}

func TestJoinTokens(t *testing.T) {
	h := newHarness(t)
	r := h.startCA("r1", nil)
	admin := h.admin(r)
	ctx := context.Background()
	boot := cav1.NewNodeBootstrapServiceClient(admin)
	anon := cav1.NewNodeBootstrapServiceClient(dial(t, r.Addr().String(), nil, r.bundle(t), ""))
	exchange := func(token, identity string) error {
		_, err := anon.ExchangeJoinToken(ctx, &cav1.ExchangeJoinTokenRequest{Token: token, Csr: csrFor(t, newKey(t), nil, identity)})
		return err
	}

	tok, err := boot.CreateJoinToken(ctx, &cav1.CreateJoinTokenRequest{Node: "node-j"})
	if err != nil {
		t.Fatal(err)
	}
	// A CSR for another identity is refused and does not burn the token.
	if err := exchange(tok.GetToken(), "spiffe://cluster.local/ambit/node/other"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("wrong identity: %v", err)
	}
	if err := exchange(tok.GetToken(), tok.GetIdentity()); err != nil {
		t.Fatalf("first use: %v", err)
	}
	err = exchange(tok.GetToken(), tok.GetIdentity())
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("reuse: %v, want PermissionDenied (already used)", err)
	}

	short, err := boot.CreateJoinToken(ctx, &cav1.CreateJoinTokenRequest{Node: "node-k", Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	h.offset.set(2 * time.Minute)
	err = exchange(short.GetToken(), short.GetIdentity())
	h.offset.set(0)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired: %v, want PermissionDenied (expired)", err)
	}
	if err := exchange("ambit-join-"+strings.Repeat("A", 43), "spiffe://cluster.local/ambit/node/x"); status.Code(err) != codes.PermissionDenied ||
		!strings.Contains(err.Error(), "unknown") {
		t.Fatalf("unknown token: %v", err)
	}
	for _, reason := range []string{"join_token_used", "join_token_expired", "join_token_unknown"} {
		if len(h.logs.lines(`"audit":true`, reason)) == 0 {
			t.Errorf("no audit line for %s", reason)
		}
	}

	// Only admins create tokens; workloads cannot be joined.
	nodeJ := h.joinNode(admin, r, "node-z")
	nconn := dial(t, r.Addr().String(), nodeJ, r.bundle(t), "")
	if _, err := cav1.NewNodeBootstrapServiceClient(nconn).CreateJoinToken(ctx, &cav1.CreateJoinTokenRequest{Node: "evil"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("node creating a token: %v", err)
	}
	if _, err := boot.CreateJoinToken(ctx, &cav1.CreateJoinTokenRequest{Identity: "spiffe://cluster.local/ns/a/sa/b"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("workload join token: %v", err)
	}
	// A control-plane service bootstraps the same way.
	xt, err := boot.CreateJoinToken(ctx, &cav1.CreateJoinTokenRequest{Identity: "spiffe://cluster.local/ambit/xds"})
	if err != nil {
		t.Fatal(err)
	}
	if err := exchange(xt.GetToken(), "spiffe://cluster.local/ambit/xds"); err != nil {
		t.Errorf("control-plane join: %v", err)
	}
}

// TestConcurrentExchange: one token, many simultaneous redemptions, one
// certificate.
func TestConcurrentExchange(t *testing.T) {
	h := newHarness(t)
	r := h.startCA("r1", nil)
	admin := h.admin(r)
	ctx := context.Background()
	tok, err := cav1.NewNodeBootstrapServiceClient(admin).CreateJoinToken(ctx, &cav1.CreateJoinTokenRequest{Node: "node-c"})
	if err != nil {
		t.Fatal(err)
	}
	anon := cav1.NewNodeBootstrapServiceClient(dial(t, r.Addr().String(), nil, r.bundle(t), ""))
	const n = 8
	csrs := make([]string, n)
	for i := range csrs {
		csrs[i] = csrFor(t, newKey(t), nil, tok.GetIdentity())
	}
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		go func() {
			<-start
			_, err := anon.ExchangeJoinToken(ctx, &cav1.ExchangeJoinTokenRequest{Token: tok.GetToken(), Csr: csrs[i]})
			errs <- err
		}()
	}
	close(start)
	ok := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case status.Code(err) != codes.PermissionDenied:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d redemptions succeeded, want exactly 1", ok)
	}
}

// TestFreshPodLinearizable: a pod written while the feed carries nothing
// (publisher stopped) is still granted, through the etcd read.
func TestFreshPodLinearizable(t *testing.T) {
	h := newHarness(t)
	r := h.startCA("r1", nil)
	admin := h.admin(r)
	nodeA := h.joinNode(admin, r, "node-a")
	conn := dial(t, r.Addr().String(), nodeA, r.bundle(t), "")
	h.putPod("shop", "old-1", "node-a", "old")
	ctx := context.Background()
	// With the feed running the index serves.
	eventually(t, "the index to hold the first pod", func() (bool, string) {
		_, _, err := certFor(ctx, t, conn, "spiffe://cluster.local/ns/shop/sa/old")
		return err == nil && authzVia(h, "spiffe://cluster.local/ns/shop/sa/old") == "index", "not via index yet"
	})

	h.stopPublisher()
	h.putPod("shop", "fresh-1", "node-a", "fresh")
	if _, _, err := certFor(ctx, t, conn, "spiffe://cluster.local/ns/shop/sa/fresh"); err != nil {
		t.Fatalf("fresh pod: %v", err)
	}
	if via := authzVia(h, "spiffe://cluster.local/ns/shop/sa/fresh"); via != "etcd" {
		t.Fatalf("fresh pod granted via %q, want etcd (the feed was stopped)", via)
	}
	if !r.IndexSynced() {
		t.Error("index never synced")
	}
}

// authzVia returns how the last grant for identity was decided.
func authzVia(h *harness, identity string) string {
	via := ""
	for _, s := range h.spans.Ended() {
		if s.Name() != "ca.CreateCertificate" {
			continue
		}
		attrs := attribute.NewSet(s.Attributes()...)
		if v, ok := attrs.Value("ambit.requested"); ok && v.AsString() == identity {
			if a, ok := attrs.Value("ambit.authz"); ok {
				via = a.AsString()
			}
		}
	}
	return via
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t)
	r := h.startCA("r1", func(c *ca.Config, _ *ca.Options) { c.RateLimit, c.RateBurst = 0.001, 3 })
	admin := h.admin(r)
	nodeA := h.joinNode(admin, r, "node-a")
	conn := dial(t, r.Addr().String(), nodeA, r.bundle(t), "")
	ctx := context.Background()
	for i := range 3 {
		if _, _, err := renew(ctx, t, conn, nodeA.ID.String()); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, _, err := renew(ctx, t, conn, nodeA.ID.String()); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the limit: %v, want ResourceExhausted", err)
	}
	// Another caller has its own bucket.
	nodeB := h.joinNode(admin, r, "node-b")
	if _, _, err := renew(ctx, t, dial(t, r.Addr().String(), nodeB, r.bundle(t), ""), nodeB.ID.String()); err != nil {
		t.Fatalf("other caller: %v", err)
	}
}

func mustParse(t *testing.T, p string) *x509.Certificate {
	t.Helper()
	c, err := keystoreParse(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustASN1(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var _ = errors.New
var _ = net.Listen
