package keystore_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"

	"github.com/ambitmesh/ambit/services/ca/internal/catest"
	"github.com/ambitmesh/ambit/services/ca/internal/keystore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, catest.LeakOptions()...) }

var td = spiffe.DefaultTrustDomain()

func TestParseKEK(t *testing.T) {
	raw := strings.Repeat("\xfe", 32)
	for name, in := range map[string]string{
		"raw": raw, "hex": hex.EncodeToString([]byte(raw)), "base64": base64.StdEncoding.EncodeToString([]byte(raw)),
		"base64 raw with newline": base64.RawURLEncoding.EncodeToString([]byte(raw)) + "\n",
	} {
		k, err := keystore.ParseKEK([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		ref, _ := keystore.ParseKEK([]byte(raw))
		if k.ID() != ref.ID() {
			t.Errorf("%s: decoded to another key", name)
		}
	}
	for _, bad := range []string{"", "short", hex.EncodeToString([]byte("sixteen bytes!!!")), strings.Repeat("k", 32)} {
		if _, err := keystore.ParseKEK([]byte(bad)); err == nil {
			t.Errorf("ParseKEK(%q) accepted", bad)
		}
	}
	if _, err := keystore.LoadKEK("", ""); err == nil {
		t.Error("no KEK accepted")
	}
}

func open(t *testing.T, ctx context.Context, o keystore.Options) *keystore.Store {
	t.Helper()
	s, err := keystore.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConcurrentOpen: racing first boots store one authority; every racer
// ends with it. Several rounds on a fresh key each.
func TestConcurrentOpen(t *testing.T) {
	cli := catest.Etcd(t)
	kek, _ := keystore.ParseKEK([]byte(keystore.NewKEK()))
	ctx := context.Background()
	for round := range 5 {
		if _, err := cli.Delete(ctx, keystore.StateKey); err != nil {
			t.Fatal(err)
		}
		const n = 8
		ids := make([]string, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				s, err := keystore.Open(ctx, keystore.Options{Client: cli, KEK: kek, TrustDomain: td,
					Initial: func() (*keystore.Material, error) { return keystore.GenerateRoot(td, time.Hour, time.Now()) }})
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = s.Current().State.Active
			})
		}
		close(start)
		wg.Wait()
		for i := range ids {
			if ids[i] == "" || ids[i] != ids[0] {
				t.Fatalf("round %d: racers ended with authorities %v", round, ids)
			}
		}
	}
}

func TestSealedAndChecked(t *testing.T) {
	cli := catest.Etcd(t)
	ctx := context.Background()
	kek, _ := keystore.ParseKEK([]byte(keystore.NewKEK()))
	gen := func() (*keystore.Material, error) { return keystore.GenerateRoot(td, time.Hour, time.Now()) }
	s := open(t, ctx, keystore.Options{Client: cli, KEK: kek, TrustDomain: td, Initial: gen})
	if s.Current().Active == nil || s.Current().TokenKey == nil {
		t.Fatal("no active authority or token key")
	}
	resp, _ := cli.Get(ctx, keystore.StateKey)
	if strings.Contains(string(resp.Kvs[0].Value), "PRIVATE KEY") {
		t.Fatal("key stored in the clear")
	}

	other, _ := keystore.ParseKEK([]byte(keystore.NewKEK()))
	if _, err := keystore.Open(ctx, keystore.Options{Client: cli, KEK: other, TrustDomain: td, Initial: gen}); err == nil ||
		!strings.Contains(err.Error(), "key-encryption key") {
		t.Errorf("wrong KEK: %v", err)
	}
	if _, err := keystore.Open(ctx, keystore.Options{Client: cli, KEK: kek, TrustDomain: spiffe.MustParse("spiffe://other.td/ambit/ca").TrustDomain(), Initial: gen}); err == nil ||
		!strings.Contains(err.Error(), "trust domain") {
		t.Errorf("wrong trust domain: %v", err)
	}

	// Swapping sealed blobs between roles fails: the AAD binds each.
	if _, err := s.Update(ctx, func(st *keystore.State) error {
		st.Authorities[0].Key = st.TokenKey.Key
		return nil
	}); err == nil {
		t.Fatal("stored a state whose authority key is the token key")
	}

	// Watchers see updates.
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	s2 := open(t, ctx, keystore.Options{Client: cli, KEK: kek, TrustDomain: td, Initial: gen})
	go func() { defer close(done); _ = s2.Run(runCtx) }()
	changed := s2.Changed()
	if _, err := s.Update(ctx, func(st *keystore.State) error { st.BundleVersion++; return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the second store never saw the update")
	}
	if s2.Current().State.BundleVersion != s.Current().State.BundleVersion {
		t.Error("stores disagree")
	}
	cancel()
	<-done
}

func TestParseMaterial(t *testing.T) {
	root := spiffetest.NewCA(t, td)
	inter := root.NewIntermediate(t)
	now := time.Now()
	chain := append(inter.CertificatePEM(), root.CertificatePEM()...)
	m, err := keystore.ParseMaterial(chain, inter.KeyPEM(t), td, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Chain) != 2 || !m.Root().Equal(root.Certificate()) {
		t.Fatal("chain not parsed")
	}
	other := spiffetest.NewCA(t, td)
	for name, tc := range map[string][2][]byte{
		"key mismatch":      {chain, other.KeyPEM(t)},
		"not chained":       {append(inter.CertificatePEM(), other.CertificatePEM()...), inter.KeyPEM(t)},
		"leaf as authority": {pemOf(t, root.MintSVID(t, spiffe.MustParse("spiffe://cluster.local/ns/a/sa/b")).Certificates[0].Raw), inter.KeyPEM(t)},
		"no certificate":    {nil, inter.KeyPEM(t)},
	} {
		if _, err := keystore.ParseMaterial(tc[0], tc[1], td, now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := keystore.ParseMaterial(chain, inter.KeyPEM(t), td, now.Add(48*time.Hour)); err == nil {
		t.Error("expired chain accepted")
	}
}

func pemOf(t *testing.T, der []byte) []byte {
	t.Helper()
	return keystore.EncodeCertificates([]*x509.Certificate{mustCert(t, der)})
}

func mustCert(t *testing.T, der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
