package spiffe_test

import (
	"crypto/tls"
	"errors"
	"testing"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// errRejected stands for "the handshake fails" where Go's TLS stack, not
// this package, produces the error.
var errRejected = errors.New("any rejection")

// Identities used across the TLS tests.
var (
	web     = spiffe.MustParse("spiffe://cluster.local/ns/default/sa/web")
	db      = spiffe.MustParse("spiffe://cluster.local/ns/default/sa/db")
	node1   = spiffe.MustParse("spiffe://cluster.local/ambit/node/node-1")
	xds     = spiffe.MustParse("spiffe://cluster.local/ambit/xds")
	caSvc   = spiffe.MustParse("spiffe://cluster.local/ambit/ca")
	config  = spiffe.MustParse("spiffe://cluster.local/ambit/config")
	admin   = spiffe.MustParse("spiffe://cluster.local/ambit/admin/alice")
	evilWeb = spiffe.MustParse("spiffe://evil.example/ns/default/sa/web")
)

func newSource(t *testing.T, svid *x509svid.SVID, bundles ...*x509bundle.Bundle) *spiffe.Source {
	t.Helper()
	src, err := spiffe.NewSource(svid, bundles...)
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	return src
}

func TestHandshake(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	ca := spiffetest.NewCA(t, td)
	intermediate := ca.NewIntermediate(t).NewIntermediate(t)
	rogue := spiffetest.NewCA(t, td) // same trust domain, not in anyone's bundle
	foreign := spiffetest.NewCA(t, spiffeid.RequireTrustDomainFromString("evil.example"))

	src := func(id spiffe.Identity, opts ...spiffetest.SVIDOption) *spiffe.Source {
		return ca.Source(t, id, opts...)
	}
	noCert := newSource(t, nil, ca.Bundle())
	tls12Client := func(cfg *tls.Config) *tls.Config {
		cfg.MaxVersion = tls.VersionTLS12
		return cfg
	}

	tests := []struct {
		name       string
		server     *tls.Config
		client     *tls.Config
		wantErr    error  // nil: both sides succeed
		rejectedBy string // "server" or "client": the side whose error must wrap wantErr
		// On success, the peers each side must see (zero: no certificate).
		wantServerSees, wantClientSees spiffe.Identity
		wantVersion                    uint16 // 0: not checked
		wantProtocol                   string
	}{
		{
			name:           "workload to workload",
			server:         spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td)),
			client:         spiffe.ClientConfig(src(db), spiffe.AuthorizeIdentity(web)),
			wantServerSees: db, wantClientSees: web,
		},
		{
			name:           "intermediate chains on both sides",
			server:         spiffe.ServerConfig(newSource(t, intermediate.MintSVID(t, web), ca.Bundle()), spiffe.AuthorizeWorkloads(td)),
			client:         spiffe.ClientConfig(newSource(t, intermediate.MintSVID(t, db), ca.Bundle()), spiffe.AuthorizeIdentity(web)),
			wantServerSees: db, wantClientSees: web,
		},
		{
			name:       "foreign trust domain without bundle",
			server:     spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td)),
			client:     spiffe.ClientConfig(newSource(t, foreign.MintSVID(t, evilWeb), ca.Bundle()), spiffe.AuthorizeIdentity(web)),
			wantErr:    spiffe.ErrNoBundle,
			rejectedBy: "server",
		},
		{
			name:       "foreign trust domain with federated bundle but not authorized",
			server:     spiffe.ServerConfig(newSource(t, ca.MintSVID(t, web), ca.Bundle(), foreign.Bundle()), spiffe.AuthorizeWorkloads(td)),
			client:     spiffe.ClientConfig(newSource(t, foreign.MintSVID(t, evilWeb), ca.Bundle()), spiffe.AuthorizeIdentity(web)),
			wantErr:    spiffe.ErrUnauthorized,
			rejectedBy: "server",
		},
		{
			name:       "rogue CA of our trust domain",
			server:     spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td)),
			client:     spiffe.ClientConfig(newSource(t, rogue.MintSVID(t, db), ca.Bundle()), spiffe.AuthorizeIdentity(web)),
			wantErr:    spiffe.ErrUntrusted,
			rejectedBy: "server",
		},
		{
			name:       "node refused by workload-only server",
			server:     spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td)),
			client:     spiffe.ClientConfig(src(node1), spiffe.AuthorizeIdentity(web)),
			wantErr:    spiffe.ErrUnauthorized,
			rejectedBy: "server",
		},
		{
			name:       "control plane refused by workload-only server",
			server:     spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td)),
			client:     spiffe.ClientConfig(src(xds), spiffe.AuthorizeIdentity(web)),
			wantErr:    spiffe.ErrUnauthorized,
			rejectedBy: "server",
		},
		{
			name:           "node accepted by node-only server",
			server:         spiffe.ServerConfig(src(xds), spiffe.AuthorizeNodes(td)),
			client:         spiffe.ClientConfig(src(node1), spiffe.AuthorizeComponents(td, spiffe.ComponentXDS)),
			wantServerSees: node1, wantClientSees: xds,
		},
		{
			name:       "workload refused by node-only server",
			server:     spiffe.ServerConfig(src(xds), spiffe.AuthorizeNodes(td)),
			client:     spiffe.ClientConfig(src(web), spiffe.AuthorizeComponents(td, spiffe.ComponentXDS)),
			wantErr:    spiffe.ErrUnauthorized,
			rejectedBy: "server",
		},
		{
			name:           "listed component accepted",
			server:         spiffe.ServerConfig(src(config), spiffe.AuthorizeComponents(td, spiffe.ComponentXDS, spiffe.ComponentCA)),
			client:         spiffe.ClientConfig(src(xds), spiffe.AuthorizeComponents(td, spiffe.ComponentConfig)),
			wantServerSees: xds, wantClientSees: config,
		},
		{
			name:       "unlisted component refused",
			server:     spiffe.ServerConfig(src(config), spiffe.AuthorizeComponents(td, spiffe.ComponentXDS)),
			client:     spiffe.ClientConfig(src(caSvc), spiffe.AuthorizeComponents(td, spiffe.ComponentConfig)),
			wantErr:    spiffe.ErrUnauthorized,
			rejectedBy: "server",
		},
		{
			name:           "admin accepted by admin-only server",
			server:         spiffe.ServerConfig(src(config), spiffe.AuthorizeAdmins(td)),
			client:         spiffe.ClientConfig(src(admin), spiffe.AuthorizeIdentity(config)),
			wantServerSees: admin, wantClientSees: config,
		},
		{
			name:       "workload refused by admin-only server",
			server:     spiffe.ServerConfig(src(config), spiffe.AuthorizeAdmins(td)),
			client:     spiffe.ClientConfig(src(web), spiffe.AuthorizeIdentity(config)),
			wantErr:    spiffe.ErrUnauthorized,
			rejectedBy: "server",
		},
		{
			name:           "any-of authorizer",
			server:         spiffe.ServerConfig(src(xds), spiffe.AuthorizeAnyOf(spiffe.AuthorizeNodes(td), spiffe.AuthorizeWorkloads(td))),
			client:         spiffe.ClientConfig(src(web), spiffe.AuthorizeIdentity(xds)),
			wantServerSees: web, wantClientSees: xds,
		},
		{
			name:       "trusted certificate with a non-Ambit SPIFFE ID",
			server:     spiffe.ServerConfig(src(web), spiffe.AuthorizeMemberOf(td)),
			client:     spiffe.ClientConfig(newSource(t, ca.MintSVIDForID(t, spiffeid.RequireFromString("spiffe://cluster.local/spire/agent/x")), ca.Bundle()), spiffe.AuthorizeIdentity(web)),
			wantErr:    spiffe.ErrInvalidIdentity,
			rejectedBy: "server",
		},
		{
			name:       "expired client certificate",
			server:     spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td)),
			client:     spiffe.ClientConfig(src(db, spiffetest.Expired()), spiffe.AuthorizeIdentity(web)),
			wantErr:    spiffe.ErrUntrusted,
			rejectedBy: "server",
		},
		{
			name:       "expired server certificate",
			server:     spiffe.ServerConfig(src(web, spiffetest.Expired()), spiffe.AuthorizeWorkloads(td)),
			client:     spiffe.ClientConfig(src(db), spiffe.AuthorizeIdentity(web)),
			wantErr:    spiffe.ErrUntrusted,
			rejectedBy: "client",
		},
		{
			name:       "client expecting another server identity",
			server:     spiffe.ServerConfig(src(db), spiffe.AuthorizeWorkloads(td)),
			client:     spiffe.ClientConfig(src(web), spiffe.AuthorizeIdentity(config)),
			wantErr:    spiffe.ErrUnauthorized,
			rejectedBy: "client",
		},
		{
			name:       "server from a foreign trust domain",
			server:     spiffe.ServerConfig(newSource(t, foreign.MintSVID(t, evilWeb), ca.Bundle()), spiffe.AuthorizeWorkloads(td)),
			client:     spiffe.ClientConfig(src(db), spiffe.AuthorizeWorkloads(td)),
			wantErr:    spiffe.ErrUntrusted,
			rejectedBy: "client",
		},
		{
			name:       "nil authorizer refuses",
			server:     spiffe.ServerConfig(src(web), nil),
			client:     spiffe.ClientConfig(src(db), spiffe.AuthorizeIdentity(web)),
			wantErr:    spiffe.ErrUnauthorized,
			rejectedBy: "server",
		},
		{
			name:       "client without certificate refused by strict server",
			server:     spiffe.ServerConfig(src(xds), spiffe.AuthorizeNodes(td)),
			client:     spiffe.ClientConfig(noCert, spiffe.AuthorizeIdentity(xds)),
			wantErr:    errRejected,
			rejectedBy: "server",
		},
		{
			name:           "client without certificate accepted by optional-cert server",
			server:         spiffe.OptionalClientCertServerConfig(src(xds), spiffe.AuthorizeNodes(td)),
			client:         spiffe.ClientConfig(noCert, spiffe.AuthorizeIdentity(xds)),
			wantServerSees: spiffe.Identity{}, wantClientSees: xds,
		},
		{
			name:           "client with certificate verified by optional-cert server",
			server:         spiffe.OptionalClientCertServerConfig(src(xds), spiffe.AuthorizeNodes(td)),
			client:         spiffe.ClientConfig(src(node1), spiffe.AuthorizeIdentity(xds)),
			wantServerSees: node1, wantClientSees: xds,
		},
		{
			name:       "optional-cert server still refuses an untrusted certificate",
			server:     spiffe.OptionalClientCertServerConfig(src(xds), spiffe.AuthorizeNodes(td)),
			client:     spiffe.ClientConfig(newSource(t, rogue.MintSVID(t, node1), ca.Bundle()), spiffe.AuthorizeIdentity(xds)),
			wantErr:    spiffe.ErrUntrusted,
			rejectedBy: "server",
		},
		{
			name:       "optional-cert server still refuses an unauthorized certificate",
			server:     spiffe.OptionalClientCertServerConfig(src(xds), spiffe.AuthorizeNodes(td)),
			client:     spiffe.ClientConfig(src(web), spiffe.AuthorizeIdentity(xds)),
			wantErr:    spiffe.ErrUnauthorized,
			rejectedBy: "server",
		},
		{
			name:           "HBONE negotiates TLS 1.3 and h2",
			server:         spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td), spiffe.WithHBONE()),
			client:         spiffe.ClientConfig(src(db), spiffe.AuthorizeIdentity(web), spiffe.WithHBONE()),
			wantServerSees: db, wantClientSees: web,
			wantVersion: tls.VersionTLS13, wantProtocol: spiffe.ProtocolH2,
		},
		{
			name:           "no options negotiate no ALPN",
			server:         spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td)),
			client:         spiffe.ClientConfig(src(db), spiffe.AuthorizeIdentity(web)),
			wantServerSees: db, wantClientSees: web,
			wantVersion: tls.VersionTLS13, wantProtocol: "",
		},
		{
			name:           "TLS 1.2 allowed by default",
			server:         spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td)),
			client:         tls12Client(spiffe.ClientConfig(src(db), spiffe.AuthorizeIdentity(web))),
			wantServerSees: db, wantClientSees: web,
			wantVersion: tls.VersionTLS12,
		},
		{
			name:           "TLS 1.2 resolves ALPN before verification too",
			server:         spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td), spiffe.WithNextProtos(spiffe.ProtocolH2)),
			client:         tls12Client(spiffe.ClientConfig(src(db), spiffe.AuthorizeIdentity(web), spiffe.WithNextProtos(spiffe.ProtocolH2))),
			wantServerSees: db, wantClientSees: web,
			wantVersion: tls.VersionTLS12, wantProtocol: spiffe.ProtocolH2,
		},
		{
			name:       "HBONE server refuses TLS 1.2",
			server:     spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td), spiffe.WithHBONE()),
			client:     tls12Client(spiffe.ClientConfig(src(db), spiffe.AuthorizeIdentity(web), spiffe.WithNextProtos(spiffe.ProtocolH2))),
			wantErr:    errRejected,
			rejectedBy: "server",
		},
		{
			name:       "HBONE server refuses a client without ALPN",
			server:     spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td), spiffe.WithHBONE()),
			client:     spiffe.ClientConfig(src(db), spiffe.AuthorizeIdentity(web)),
			wantErr:    spiffe.ErrApplicationProtocol,
			rejectedBy: "server",
		},
		{
			name:       "HBONE client refuses a server without ALPN",
			server:     spiffe.ServerConfig(src(web), spiffe.AuthorizeWorkloads(td)),
			client:     spiffe.ClientConfig(src(db), spiffe.AuthorizeIdentity(web), spiffe.WithHBONE()),
			wantErr:    spiffe.ErrApplicationProtocol,
			rejectedBy: "client",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, cli := handshake(t, tt.server, tt.client)
			if tt.wantErr != nil {
				checkRejected(t, srv, cli, tt.rejectedBy, tt.wantErr)
				return
			}
			if srv.err != nil || cli.err != nil {
				t.Fatalf("handshake failed: server: %v; client: %v", srv.err, cli.err)
			}
			checkPeer(t, "server", srv.state, tt.wantServerSees)
			checkPeer(t, "client", cli.state, tt.wantClientSees)
			if tt.wantVersion != 0 && cli.state.Version != tt.wantVersion {
				t.Errorf("version = %s, want %s", tls.VersionName(cli.state.Version), tls.VersionName(tt.wantVersion))
			}
			if srv.state.NegotiatedProtocol != tt.wantProtocol || cli.state.NegotiatedProtocol != tt.wantProtocol {
				t.Errorf("ALPN: server %q, client %q; want %q", srv.state.NegotiatedProtocol, cli.state.NegotiatedProtocol, tt.wantProtocol)
			}
		})
	}
}

// checkRejected checks that both sides failed and that the rejecting side
// failed for the expected reason.
func checkRejected(t *testing.T, srv, cli side, rejectedBy string, wantErr error) {
	t.Helper()
	if srv.err == nil || cli.err == nil {
		t.Fatalf("want both sides to fail; server: %v; client: %v", srv.err, cli.err)
	}
	t.Logf("server: %v\nclient: %v", srv.err, cli.err)
	got := srv.err
	if rejectedBy == "client" {
		got = cli.err
	}
	if wantErr != errRejected && !errors.Is(got, wantErr) {
		t.Errorf("%s error = %v, want one wrapping %v", rejectedBy, got, wantErr)
	}
}

// checkPeer checks the identity PeerIdentity finds; want zero means the peer
// sent no certificate.
func checkPeer(t *testing.T, who string, cs tls.ConnectionState, want spiffe.Identity) {
	t.Helper()
	got, err := spiffe.PeerIdentity(cs)
	if want.IsZero() {
		if !errors.Is(err, spiffe.ErrNoPeerCertificate) {
			t.Errorf("%s: PeerIdentity = %v, %v; want ErrNoPeerCertificate", who, got, err)
		}
		return
	}
	if err != nil || got != want {
		t.Errorf("%s: PeerIdentity = %v, %v; want %v", who, got, err, want)
	}
}
