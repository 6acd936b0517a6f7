package ca_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ambitmesh/ambit/pkg/localproc"
	"github.com/ambitmesh/ambit/pkg/spiffe"
	cav1 "github.com/ambitmesh/ambit/proto/ambit/ca/v1"
	configv1 "github.com/ambitmesh/ambit/proto/ambit/config/v1"

	"github.com/ambitmesh/ambit/services/ca"
	"github.com/ambitmesh/ambit/services/ca/internal/clustertrustbundle"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

// TestClusterTrustBundlePublished runs the real ambit-config binary (a
// service never imports another) with a serving certificate from the CA
// under test, and checks that a CA replica publishes its bundle there as a
// ClusterTrustBundle: first while config is still down (the replica
// retries), then again after a rotation adds a root, with a second
// publishing replica that must not write the same version twice.
func TestClusterTrustBundlePublished(t *testing.T) {
	bin := configBinary(t)
	h := newHarness(t)
	h.stopPublisher() // ambit-config leads the change feed here
	ctx := context.Background()

	// config's address is known before config runs, so the replica starts
	// publishing into the void and must retry.
	configAddr := freeLoopbackAddr(t)
	r := h.startCA("ca-0", func(cfg *ca.Config, o *ca.Options) {
		cfg.ConfigServers = []string{configAddr}
		o.PublishMaxBackoff = 200 * time.Millisecond
	})
	adminSrc := h.adminSource()
	caAdmin := dialSource(t, r.Addr().String(), adminSrc, "")
	eventually(t, "a failed publish attempt", func() (bool, string) {
		return len(h.logs.lines("ClusterTrustBundle failed; retrying")) > 0, "no retry logged"
	})

	files := h.joinConfig(caAdmin, r)
	logDir := t.TempDir()
	p, err := localproc.Start(ctx, "config-0", bin, []string{
		"--listen-addr=" + configAddr, "--admin-addr=127.0.0.1:0", "--replica-id=config-0", "--election-ttl=2s",
		"--cert-file=" + files.CertFile, "--key-file=" + files.KeyFile, "--bundle-file=" + files.BundleFile,
		"--etcd-endpoints=" + strings.Join(h.stack.EtcdEndpoints(), ","), "--nats-url=" + h.stack.NATSURL(),
	}, logDir, 20*time.Second)
	if err != nil {
		t.Fatalf("start ambit-config: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("stop ambit-config: %v", err)
		}
		if t.Failed() {
			if b, err := os.ReadFile(p.LogPath); err == nil {
				t.Logf("ambit-config log:\n%s", b)
			}
		}
	})
	cfgAdmin := dialConfig(t, configAddr, adminSrc)

	// 1. The current root appears as ambit.io:<td>:bundle.
	want := r.bundle(t).X509Authorities()
	v1 := waitForBundle(t, cfgAdmin, 0, want)

	// 2. A second replica publishes too; the stored bundle is up to date,
	// so it only reads.
	r1 := h.startCA("ca-1", func(cfg *ca.Config, o *ca.Options) { cfg.ConfigServers = []string{configAddr} })
	eventually(t, "ca-1 to check the stored bundle", func() (bool, string) {
		return len(h.logs.lines(`"replica":"ca-1"`, "ClusterTrustBundle needs no write")) > 0, "no check logged"
	})

	// 3. A rotation adds a root: the stored bundle holds both, under a
	// higher version, written once.
	start, err := cav1.NewRotationServiceClient(caAdmin).StartRotation(ctx, &cav1.StartRotationRequest{})
	if err != nil {
		t.Fatalf("StartRotation: %v", err)
	}
	if n := len(start.GetStatus().GetAuthorities()); n != 2 {
		t.Fatalf("rotation holds %d authorities, want 2", n)
	}
	eventually(t, "the replicas to follow the rotation", func() (bool, string) {
		return len(r.bundle(t).X509Authorities()) == 2 && len(r1.bundle(t).X509Authorities()) == 2, "a replica bundle still has one root"
	})
	v2 := waitForBundle(t, cfgAdmin, v1, r.bundle(t).X509Authorities())
	eventually(t, "both replicas to settle on the new version", func() (bool, string) {
		n := len(h.logs.lines(`"replica":"ca-1"`, "ClusterTrustBundle needs no write", fmt.Sprintf(`"version":%d`, v2))) +
			len(h.logs.lines(`"replica":"ca-1"`, "published as ClusterTrustBundle", fmt.Sprintf(`"version":%d`, v2)))
		return n > 0, "ca-1 has not handled the new version"
	})
	if lines := h.logs.lines("published as ClusterTrustBundle", fmt.Sprintf(`"version":%d`, v2)); len(lines) != 1 {
		t.Errorf("version %d written %d times:\n%s", v2, len(lines), strings.Join(lines, "\n"))
	}
}

// waitForBundle waits until the stored ClusterTrustBundle has a version
// above after and exactly the roots want; it returns that version.
func waitForBundle(t *testing.T, c configv1.ConfigServiceClient, after uint64, want []*x509.Certificate) uint64 {
	t.Helper()
	ref := &configv1.ObjectRef{Group: clustertrustbundle.Group, Kind: clustertrustbundle.Kind, Name: clustertrustbundle.Name(td)}
	var version uint64
	eventually(t, "the ClusterTrustBundle", func() (bool, string) {
		resp, err := c.Get(context.Background(), &configv1.GetRequest{Ref: ref})
		if err != nil {
			return false, err.Error()
		}
		v, roots, err := clustertrustbundle.Roots(resp.GetObject())
		if err != nil {
			return false, err.Error()
		}
		if v <= after || !sameCertificates(roots, want) {
			return false, "stored: " + string(resp.GetObject())
		}
		if !strings.Contains(string(resp.GetObject()), `"signerName":"`+clustertrustbundle.SignerName(td)+`"`) {
			return false, "wrong signer: " + string(resp.GetObject())
		}
		version = v
		return true, ""
	})
	return version
}

func sameCertificates(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// configBinary is $AMBIT_BIN/ambit-config when the Makefile built it, else
// a fresh build of the config module next door.
func configBinary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("AMBIT_BIN"); dir != "" {
		if p := filepath.Join(dir, "ambit-config"); fileExists(p) {
			return p
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build ambit-config, and AMBIT_BIN is not set")
	}
	out := filepath.Join(t.TempDir(), "ambit-config")
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/ambit-config")
	cmd.Dir = filepath.Join("..", "config")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ambit-config: %v\n%s", err, b)
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// freeLoopbackAddr returns a loopback address nothing listens on now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// adminSource issues admin credentials from the key material.
func (h *harness) adminSource() *spiffe.Source {
	h.t.Helper()
	cfg := ca.DefaultIssueAdminConfig()
	cfg.EtcdEndpoints = h.stack.EtcdEndpoints()
	cfg.KEK = h.kek
	cfg.Out = h.t.TempDir()
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
	return src
}

// joinConfig gives ambit-config its serving certificate through a join
// token, as an operator would, and writes the files it reads.
func (h *harness) joinConfig(admin *grpc.ClientConn, r *replica) spiffe.Files {
	h.t.Helper()
	ctx := context.Background()
	configID, err := spiffe.NewControlPlane(td, spiffe.ComponentConfig)
	if err != nil {
		h.t.Fatal(err)
	}
	tok, err := cav1.NewNodeBootstrapServiceClient(admin).CreateJoinToken(ctx, &cav1.CreateJoinTokenRequest{Identity: configID.String()})
	if err != nil {
		h.t.Fatalf("CreateJoinToken: %v", err)
	}
	key := newKey(h.t)
	conn := dial(h.t, r.Addr().String(), nil, r.bundle(h.t), "")
	resp, err := cav1.NewNodeBootstrapServiceClient(conn).ExchangeJoinToken(ctx, &cav1.ExchangeJoinTokenRequest{
		Token: tok.GetToken(), Csr: csrFor(h.t, key, nil, configID.String()),
	})
	if err != nil {
		h.t.Fatalf("ExchangeJoinToken: %v", err)
	}
	svid := svidFromChain(h.t, resp.GetCertChain(), key)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		h.t.Fatal(err)
	}
	dir := h.t.TempDir()
	files := spiffe.Files{
		CertFile:   filepath.Join(dir, "config.crt"),
		KeyFile:    filepath.Join(dir, "config.key"),
		BundleFile: filepath.Join(dir, "bundle.pem"),
	}
	for path, data := range map[string][]byte{
		files.CertFile:   keystore.EncodeCertificates(svid.Certificates),
		files.KeyFile:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		files.BundleFile: keystore.EncodeCertificates(r.bundle(h.t).X509Authorities()),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			h.t.Fatal(err)
		}
	}
	return files
}

// dialConfig connects to ambit-config as src's identity.
func dialConfig(t *testing.T, addr string, src *spiffe.Source) configv1.ConfigServiceClient {
	t.Helper()
	configID, _ := spiffe.NewControlPlane(td, spiffe.ComponentConfig)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(spiffe.ClientConfig(src, spiffe.AuthorizeIdentity(configID)))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return configv1.NewConfigServiceClient(conn)
}
