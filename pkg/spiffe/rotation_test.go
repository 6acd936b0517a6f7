package spiffe_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// peer is one party of the rotation tests: a Source and the TLS
// configurations built from it once, up front, as a running service would.
type peer struct {
	id     spiffe.Identity
	src    *spiffe.Source
	server *tls.Config
}

func newPeer(t *testing.T, ca *spiffetest.CA, id spiffe.Identity) *peer {
	t.Helper()
	src := ca.Source(t, id)
	return &peer{id: id, src: src, server: spiffe.ServerConfig(src, spiffe.AuthorizeWorkloads(id.TrustDomain()))}
}

// clientTo returns p's client configuration pinned to dst, built like a
// connection pool would: once per destination identity.
func (p *peer) clientTo(dst *peer) *tls.Config {
	return spiffe.ClientConfig(p.src, spiffe.AuthorizeIdentity(dst.id))
}

// connect connects client to server and checks that it works, that both
// see the right identity and that each presented a certificate signed by
// the root the test expects.
func connect(t *testing.T, client, server *peer, clientRoot, serverRoot *x509.Certificate) {
	t.Helper()
	srv, cli := handshake(t, server.server, client.clientTo(server))
	if srv.err != nil || cli.err != nil {
		t.Fatalf("%s -> %s: server: %v; client: %v", client.id, server.id, srv.err, cli.err)
	}
	checkPeer(t, "server", srv.state, client.id)
	checkPeer(t, "client", cli.state, server.id)
	checkIssuedUnder(t, srv.state, clientRoot)
	checkIssuedUnder(t, cli.state, serverRoot)
}

func checkIssuedUnder(t *testing.T, cs tls.ConnectionState, root *x509.Certificate) {
	t.Helper()
	if err := cs.PeerCertificates[0].CheckSignatureFrom(root); err != nil {
		t.Errorf("peer certificate %s not issued under root %s: %v", cs.PeerCertificates[0].URIs, root.Subject, err)
	}
}

func bundleOf(t *testing.T, cas ...*spiffetest.CA) *x509bundle.Bundle {
	t.Helper()
	b := x509bundle.New(cas[0].TrustDomain())
	for _, ca := range cas {
		b.AddX509Authority(ca.Root())
	}
	return b
}

// TestRootRotation walks DESIGN §4's rotation (add the new root, re-issue
// under it, remove the old root) with configurations built once before it
// started, connecting in both directions after every step.
func TestRootRotation(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	oldCA, newCA := spiffetest.NewCA(t, td), spiffetest.NewCA(t, td)
	a := newPeer(t, oldCA, web)
	b := newPeer(t, oldCA, db)
	// A third peer left behind on the old root, to show its removal bites.
	straggler := newPeer(t, oldCA, spiffe.MustParse("spiffe://cluster.local/ns/legacy/sa/app"))
	oldRoot, newRoot := oldCA.Root(), newCA.Root()

	steps := []struct {
		name         string
		apply        func(t *testing.T)
		aRoot, bRoot *x509.Certificate // roots of the certificates A and B present after the step
	}{
		{
			name:  "before rotation",
			apply: func(*testing.T) {},
			aRoot: oldRoot, bRoot: oldRoot,
		},
		{
			name: "overlap: both roots in every bundle",
			apply: func(t *testing.T) {
				for _, p := range []*peer{a, b, straggler} {
					if err := p.src.SetBundles(bundleOf(t, oldCA, newCA)); err != nil {
						t.Fatal(err)
					}
				}
			},
			aRoot: oldRoot, bRoot: oldRoot,
		},
		{
			name: "overlap: A renewed under the new root, B still on the old",
			apply: func(t *testing.T) {
				if err := a.src.SetSVID(newCA.MintSVID(t, a.id)); err != nil {
					t.Fatal(err)
				}
			},
			aRoot: newRoot, bRoot: oldRoot,
		},
		{
			name: "overlap: B renewed under the new root too",
			apply: func(t *testing.T) {
				if err := b.src.SetSVID(newCA.MintSVID(t, b.id)); err != nil {
					t.Fatal(err)
				}
			},
			aRoot: newRoot, bRoot: newRoot,
		},
		{
			name: "old root removed",
			apply: func(t *testing.T) {
				for _, p := range []*peer{a, b} {
					if err := p.src.SetBundles(newCA.Bundle()); err != nil {
						t.Fatal(err)
					}
				}
			},
			aRoot: newRoot, bRoot: newRoot,
		},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.apply(t)
			connect(t, a, b, step.aRoot, step.bRoot)
			connect(t, b, a, step.bRoot, step.aRoot)
		})
	}

	t.Run("straggler on the old root is refused both ways", func(t *testing.T) {
		srv, cli := handshake(t, a.server, straggler.clientTo(a))
		checkRejected(t, srv, cli, "server", spiffe.ErrUntrusted)
		srv, cli = handshake(t, straggler.server, a.clientTo(straggler))
		checkRejected(t, srv, cli, "client", spiffe.ErrUntrusted)
	})
}

// TestSourceUpdateWithoutOverlap swaps root and SVID in one Update on both
// sides; configurations built before keep working on new connections.
func TestSourceUpdateWithoutOverlap(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	oldCA, newCA := spiffetest.NewCA(t, td), spiffetest.NewCA(t, td)
	a, b := newPeer(t, oldCA, web), newPeer(t, oldCA, db)
	connect(t, a, b, oldCA.Root(), oldCA.Root())

	for _, p := range []*peer{a, b} {
		if err := p.src.Update(newCA.MintSVID(t, p.id), newCA.Bundle()); err != nil {
			t.Fatal(err)
		}
	}
	connect(t, a, b, newCA.Root(), newCA.Root())
	connect(t, b, a, newCA.Root(), newCA.Root())
}

// TestResumedSessionIsReverified shows why the configurations verify in
// VerifyConnection: a resumed TLS session skips certificate verification
// in Go, so without it a peer whose root was removed could come back on an
// old session ticket.
func TestResumedSessionIsReverified(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	ca, other := spiffetest.NewCA(t, td), spiffetest.NewCA(t, td)

	tests := []struct {
		name       string
		revoke     func(t *testing.T, server, client *spiffe.Source) // removes trust in the other side's root
		rejectedBy string
	}{
		{
			name: "server drops the client's root",
			revoke: func(t *testing.T, server, _ *spiffe.Source) {
				if err := server.SetBundles(other.Bundle()); err != nil {
					t.Fatal(err)
				}
			},
			rejectedBy: "server",
		},
		{
			name: "client drops the server's root",
			revoke: func(t *testing.T, _, client *spiffe.Source) {
				if err := client.SetBundles(other.Bundle()); err != nil {
					t.Fatal(err)
				}
			},
			rejectedBy: "client",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverSrc, clientSrc := ca.Source(t, web), ca.Source(t, db)
			server := spiffe.ServerConfig(serverSrc, spiffe.AuthorizeWorkloads(td), spiffe.WithHBONE())
			client := spiffe.ClientConfig(clientSrc, spiffe.AuthorizeIdentity(web), spiffe.WithHBONE())
			// The session cache is keyed by server name; a fixed one lets
			// sessions survive the new port of every test listener.
			client.ServerName = "resumption.test"
			client.ClientSessionCache = tls.NewLRUClientSessionCache(4)

			for i, wantResume := range []bool{false, true} {
				srv, cli := handshake(t, server, client)
				if srv.err != nil || cli.err != nil {
					t.Fatalf("connection %d: server: %v; client: %v", i, srv.err, cli.err)
				}
				if cli.state.DidResume != wantResume {
					t.Fatalf("connection %d: DidResume = %v, want %v", i, cli.state.DidResume, wantResume)
				}
				checkPeer(t, "server", srv.state, db)
			}

			tt.revoke(t, serverSrc, clientSrc)
			srv, cli := handshake(t, server, client)
			checkRejected(t, srv, cli, tt.rejectedBy, spiffe.ErrUntrusted)
		})
	}

	// The control: go-spiffe's own server configuration, which verifies in
	// VerifyPeerCertificate, lets the resumed session through. If this ever
	// fails after a go-spiffe upgrade, the reason given in tlsconfig.go for
	// not using it has gone away.
	t.Run("control: go-spiffe tlsconfig accepts the resumed session", func(t *testing.T) {
		serverSrc, clientSrc := ca.Source(t, web), ca.Source(t, db)
		server := tlsconfig.MTLSServerConfig(serverSrc, serverSrc, tlsconfig.AuthorizeAny())
		client := spiffe.ClientConfig(clientSrc, spiffe.AuthorizeIdentity(web))
		client.ServerName = "resumption.test"
		client.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		for range 2 {
			if srv, cli := handshake(t, server, client); srv.err != nil || cli.err != nil {
				t.Fatalf("server: %v; client: %v", srv.err, cli.err)
			}
		}
		if err := serverSrc.SetBundles(other.Bundle()); err != nil {
			t.Fatal(err)
		}
		srv, cli := handshake(t, server, client)
		if srv.err != nil || cli.err != nil || !cli.state.DidResume {
			t.Errorf("go-spiffe tlsconfig now refuses a resumed session from a removed root (server: %v; client: %v; resumed: %v)", srv.err, cli.err, cli.state.DidResume)
		}
	})
}
