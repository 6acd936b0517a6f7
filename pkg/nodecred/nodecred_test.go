package nodecred_test

import (
	"context"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ambitmesh/ambit/pkg/nodecred"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait is how long a test waits for an event before it fails.
const wait = 10 * time.Second

func options(t *testing.T, ca *fakeCA, dir, token string) nodecred.Options {
	return nodecred.Options{
		Node:                "node-a",
		Dir:                 dir,
		JoinToken:           token,
		CAAddresses:         []string{ca.addr},
		BootstrapBundleFile: ca.bootstrapFile(t),
		MinBackoff:          10 * time.Millisecond,
		MaxBackoff:          100 * time.Millisecond,
		Logger:              slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func obtain(t *testing.T, o nodecred.Options) *nodecred.Credential {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	c, err := nodecred.Obtain(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run starts c.Run and stops it at cleanup; the returned channel yields
// Run's result.
func run(t *testing.T, c *nodecred.Credential) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		res <- c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return res
}

// waitFor waits until cond holds, re-checking on every change of c.
func waitFor(t *testing.T, c *nodecred.Credential, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(wait)
	for {
		ch := c.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func serialOf(svid *x509svid.SVID) *big.Int { return svid.Certificates[0].SerialNumber }

func storedSerial(t *testing.T, dir string) *big.Int {
	t.Helper()
	svid, err := x509svid.Load(filepath.Join(dir, nodecred.CertFile), filepath.Join(dir, nodecred.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return serialOf(svid)
}

func TestJoinThenRestart(t *testing.T) {
	ca := startFakeCA(t)
	dir := filepath.Join(t.TempDir(), "node-a")
	token := ca.newToken("node-a")
	c := obtain(t, options(t, ca, dir, token))

	want, _ := spiffe.NewNode(spiffe.DefaultTrustDomain(), "node-a")
	if c.Identity() != want || c.SVID().ID != want.ID() {
		t.Fatalf("identity %s, SVID %s; want %s", c.Identity(), c.SVID().ID, want)
	}
	if ca.joinCount() != 1 {
		t.Fatalf("%d joins", ca.joinCount())
	}
	joined := serialOf(c.SVID())
	if got := storedSerial(t, dir); got.Cmp(joined) != 0 {
		t.Fatalf("stored serial %x, in memory %x", got, joined)
	}
	st, err := os.Stat(c.Files().KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := spiffe.VerifyPeer(c.SVID().Certificates, c.Source(), spiffe.AuthorizeIdentity(want)); err != nil {
		t.Fatalf("the SVID does not verify against the Source's bundle: %v", err)
	}

	// A restart loads the credential: no token needed, none spent.
	for _, tok := range []string{"", token} {
		o := options(t, ca, dir, tok)
		o.BootstrapBundleFile = ""
		again := obtain(t, o)
		if got := serialOf(again.SVID()); got.Cmp(joined) != 0 {
			t.Fatalf("after restart (token %q): serial %x, want the stored %x", tok, got, joined)
		}
	}
	if ca.joinCount() != 1 {
		t.Fatalf("%d joins after restarts, want 1", ca.joinCount())
	}
}

func TestAgentsSharingADirRedeemTheTokenOnce(t *testing.T) {
	ca := startFakeCA(t)
	dir := t.TempDir()
	o := options(t, ca, dir, ca.newToken("node-a"))
	var wg sync.WaitGroup
	creds := make([]*nodecred.Credential, 3)
	errs := make([]error, 3)
	for i := range creds {
		wg.Go(func() { creds[i], errs[i] = nodecred.Obtain(t.Context(), o) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("agent %d: %v", i, err)
		}
		if serialOf(creds[i].SVID()).Cmp(serialOf(creds[0].SVID())) != 0 {
			t.Fatalf("agent %d holds another certificate", i)
		}
	}
	if ca.joinCount() != 1 {
		t.Fatalf("%d joins, want 1", ca.joinCount())
	}
}

func TestRenewsAtHalfLife(t *testing.T) {
	ca := startFakeCA(t)
	dir := t.TempDir()
	o := options(t, ca, dir, ca.newToken("node-a"))
	o.Validity = 2 * time.Second
	c := obtain(t, o)
	first := receive(t, ca.issued, "the join's certificate")
	run(t, c)

	for i, prev := range []issued{first, {}} {
		r := receive(t, ca.renewals, "a renewal")
		if i == 0 {
			// Half of the lifetime (2s, less the sub-second part that
			// certificates cannot encode) counted from issue, not from
			// the backdated NotBefore.
			if early := prev.at.Add(prev.notAfter.Sub(prev.at) / 2); r.at.Before(early) {
				t.Fatalf("renewed %s after issue, before half-life", r.at.Sub(prev.at))
			}
		}
		if r.caller != c.Identity() || r.impersonated {
			t.Fatalf("renewal by %s (impersonating: %v), want the node itself", r.caller, r.impersonated)
		}
		next := receive(t, ca.issued, "the renewed certificate")
		waitFor(t, c, "the renewed certificate in the Source", func() bool {
			svid, err := c.Source().GetX509SVID()
			return err == nil && serialOf(svid).Cmp(next.serial) == 0
		})
		if got := storedSerial(t, dir); got.Cmp(next.serial) != 0 {
			t.Fatalf("stored serial %x after renewal %d, want %x", got, i, next.serial)
		}
		if i == 1 && r.callerSerial.Cmp(first.serial) == 0 {
			t.Fatal("the second renewal authenticated with the first certificate: the CA must see the current one")
		}
	}
	// The bundle watch reconnected with a renewed certificate.
	for {
		if s := receive(t, ca.watchers, "a watch with a renewed certificate"); s.Cmp(first.serial) != 0 {
			break
		}
	}
}

func TestBundleUpdateApplied(t *testing.T) {
	ca := startFakeCA(t)
	dir := t.TempDir()
	c := obtain(t, options(t, ca, dir, ca.newToken("node-a")))
	run(t, c)
	if v := receive(t, ca.acks, "the first ack"); v != 1 {
		t.Fatalf("first ack %d, want 1", v)
	}

	newRoot := spiffetest.NewCA(t, spiffe.DefaultTrustDomain())
	v := ca.setBundle(ca.root.Root(), newRoot.Root())
	waitFor(t, c, "bundle version 2", func() bool { return c.BundleVersion() == v })
	b, err := c.Source().GetX509BundleForTrustDomain(spiffe.DefaultTrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	if !b.HasX509Authority(newRoot.Root()) || !b.HasX509Authority(ca.root.Root()) {
		t.Fatalf("the Source's bundle has %d roots, want the old and the new", len(b.X509Authorities()))
	}
	stored, err := x509bundle.Load(spiffe.DefaultTrustDomain(), c.Files().BundleFile)
	if err != nil {
		t.Fatal(err)
	}
	if !stored.Equal(b) {
		t.Fatal("bundle.pem does not hold the new bundle")
	}
	if got := receive(t, ca.acks, "the ack of the new bundle"); got != v {
		t.Fatalf("ack %d, want %d", got, v)
	}
	// A peer with a certificate from the new root now verifies.
	peerID, _ := spiffe.NewControlPlane(spiffe.DefaultTrustDomain(), spiffe.ComponentXDS)
	if _, err := spiffe.VerifyPeer(newRoot.MintSVID(t, peerID).Certificates, c.Source(), spiffe.AuthorizeMemberOf(spiffe.DefaultTrustDomain())); err != nil {
		t.Fatalf("a peer of the new root: %v", err)
	}
	// A restart loads the new bundle.
	o := options(t, ca, dir, "")
	again := obtain(t, o)
	if b2, _ := again.Source().GetX509BundleForTrustDomain(spiffe.DefaultTrustDomain()); !b2.Equal(b) {
		t.Fatal("the restarted credential lacks the new bundle")
	}
}

func TestMissingToken(t *testing.T) {
	ca := startFakeCA(t)
	dir := t.TempDir()
	_, err := nodecred.Obtain(t.Context(), options(t, ca, dir, ""))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"node-a", "no join token", filepath.Join(dir, "cert.pem") + " does not exist"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestRefusedToken(t *testing.T) {
	ca := startFakeCA(t)
	_, err := nodecred.Obtain(t.Context(), options(t, ca, t.TempDir(), "ambit-join-bogus"))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("join with an unknown token: %v", err)
	}
}

func TestJoinRetriesWhileTheCAIsUnavailable(t *testing.T) {
	ca := startFakeCA(t)
	ca.failNext("ExchangeJoinToken", status.Error(codes.Unavailable, "etcd down"), status.Error(codes.Unavailable, "etcd down"))
	c := obtain(t, options(t, ca, t.TempDir(), ca.newToken("node-a")))
	if c.SVID() == nil || ca.joinCount() != 1 {
		t.Fatal("no credential after the CA recovered")
	}
}

func TestUnusableStoredCredential(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	nodeA, _ := spiffe.NewNode(td, "node-a")
	nodeB, _ := spiffe.NewNode(td, "node-b")
	other := spiffetest.NewCA(t, td)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, ca *fakeCA, dir string)
		want   []string // in the error; "DIR" stands for the directory
	}{
		{"corrupt cert", func(t *testing.T, _ *fakeCA, dir string) { overwrite(t, dir, "cert.pem", "junk") },
			[]string{"DIR/cert.pem: no PEM certificates"}},
		{"corrupt key", func(t *testing.T, _ *fakeCA, dir string) { overwrite(t, dir, "key.pem", "junk") },
			[]string{"DIR/key.pem: no PEM private key"}},
		{"corrupt bundle", func(t *testing.T, _ *fakeCA, dir string) { overwrite(t, dir, "bundle.pem", "junk") },
			[]string{"DIR/bundle.pem"}},
		{"missing key", func(t *testing.T, _ *fakeCA, dir string) { remove(t, dir, "key.pem") },
			[]string{"DIR/key.pem", "no such file"}},
		{"key of another certificate", func(t *testing.T, ca *fakeCA, dir string) {
			_, key, _ := ca.root.MintSVID(t, nodeA).Marshal()
			overwrite(t, dir, "key.pem", string(key))
		}, []string{"DIR/cert.pem and DIR/key.pem"}},
		{"another node's certificate", func(t *testing.T, ca *fakeCA, dir string) {
			writeSVID(t, dir, ca.root.MintSVID(t, nodeB))
		}, []string{"DIR/cert.pem holds spiffe://cluster.local/ambit/node/node-b"}},
		{"expired", func(t *testing.T, ca *fakeCA, dir string) {
			writeSVID(t, dir, ca.root.MintSVID(t, nodeA, spiffetest.Expired()))
		}, []string{"DIR/cert.pem expired at"}},
		{"foreign root", func(t *testing.T, _ *fakeCA, dir string) {
			writeSVID(t, dir, other.MintSVID(t, nodeA))
		}, []string{"DIR/cert.pem does not verify against DIR/bundle.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := startFakeCA(t)
			dir := t.TempDir()
			obtain(t, options(t, ca, dir, ca.newToken("node-a")))
			tc.damage(t, ca, dir)

			_, err := nodecred.Obtain(t.Context(), options(t, ca, dir, ""))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range append(tc.want, "no join token") {
				want = strings.ReplaceAll(want, "DIR", dir)
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			// With a new token the node joins again and repairs Dir.
			c := obtain(t, options(t, ca, dir, ca.newToken("node-a")))
			if got := storedSerial(t, dir); got.Cmp(serialOf(c.SVID())) != 0 || ca.joinCount() != 2 {
				t.Fatalf("after re-joining: stored %x, in memory %x, %d joins", got, serialOf(c.SVID()), ca.joinCount())
			}
		})
	}
}

// overwrite replaces a file of the credential as a careless operator would.
func overwrite(t *testing.T, dir, name, data string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func writeSVID(t *testing.T, dir string, svid *x509svid.SVID) {
	t.Helper()
	cert, key, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, dir, "cert.pem", string(cert))
	overwrite(t, dir, "key.pem", string(key))
}

func TestRunStopsOnPermanentRefusal(t *testing.T) {
	ca := startFakeCA(t)
	o := options(t, ca, t.TempDir(), ca.newToken("node-a"))
	o.Validity = 2 * time.Second
	c := obtain(t, o)
	ca.failNext("CreateCertificate", status.Error(codes.Unavailable, "etcd down"), status.Error(codes.PermissionDenied, "revoked"))
	err := receive(t, run(t, c), "Run to return")
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunStopsWhenTheCertificateExpiresUnrenewed(t *testing.T) {
	ca := startFakeCA(t)
	o := options(t, ca, t.TempDir(), ca.newToken("node-a"))
	o.Validity = 2 * time.Second
	c := obtain(t, o)
	ca.stop()
	err := receive(t, run(t, c), "Run to return")
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "new join token") {
		t.Fatalf("Run: %v", err)
	}
}

func TestOptionsErrors(t *testing.T) {
	ca := startFakeCA(t)
	for _, tc := range []struct {
		name   string
		modify func(*nodecred.Options)
		want   string
	}{
		{"no node", func(o *nodecred.Options) { o.Node = "" }, "node"},
		{"bad node", func(o *nodecred.Options) { o.Node = "Node_A" }, "node"},
		{"no dir", func(o *nodecred.Options) { o.Dir = "" }, "no credential directory"},
		{"no CA", func(o *nodecred.Options) { o.CAAddresses = nil }, "CA addresses"},
		{"bad CA", func(o *nodecred.Options) { o.CAAddresses = []string{"ca"} }, `"ca" is not host:port`},
		{"fraction", func(o *nodecred.Options) { o.RenewFraction = 1.5 }, "renew fraction"},
		{"no bootstrap bundle", func(o *nodecred.Options) { o.BootstrapBundleFile = "" }, "bootstrap bundle file"},
		{"unreadable bootstrap bundle", func(o *nodecred.Options) { o.BootstrapBundleFile = "/nonexistent.pem" }, "/nonexistent.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options(t, ca, t.TempDir(), ca.newToken("node-a"))
			tc.modify(&o)
			_, err := nodecred.Obtain(t.Context(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
