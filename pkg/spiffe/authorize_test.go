package spiffe_test

import (
	"crypto/x509"
	"errors"
	"testing"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestAuthorizers(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	future := spiffe.MustParse("spiffe://cluster.local/ambit/future-thing")
	foreignNode := spiffe.MustParse("spiffe://evil.example/ambit/node/node-1")
	unnamedAdmin := spiffe.MustParse("spiffe://cluster.local/ambit/admin")
	all := []spiffe.Identity{web, db, node1, xds, caSvc, config, admin, unnamedAdmin, future, evilWeb, foreignNode}

	tests := []struct {
		name      string
		authorize spiffe.Authorizer
		allowed   []spiffe.Identity
	}{
		{"member of", spiffe.AuthorizeMemberOf(td), []spiffe.Identity{web, db, node1, xds, caSvc, config, admin, unnamedAdmin, future}},
		{"member of zero trust domain", spiffe.AuthorizeMemberOf(spiffeid.TrustDomain{}), nil},
		{"workloads", spiffe.AuthorizeWorkloads(td), []spiffe.Identity{web, db}},
		{"nodes", spiffe.AuthorizeNodes(td), []spiffe.Identity{node1}},
		{"admins", spiffe.AuthorizeAdmins(td), []spiffe.Identity{admin, unnamedAdmin}},
		{"components", spiffe.AuthorizeComponents(td, spiffe.ComponentXDS, spiffe.ComponentCA), []spiffe.Identity{xds, caSvc}},
		{"no components", spiffe.AuthorizeComponents(td), nil},
		{"unknown component when listed", spiffe.AuthorizeComponents(td, "future-thing"), []spiffe.Identity{future}},
		{"exact identity", spiffe.AuthorizeIdentity(web), []spiffe.Identity{web}},
		{"zero identity", spiffe.AuthorizeIdentity(spiffe.Identity{}), nil},
		{"any of", spiffe.AuthorizeAnyOf(spiffe.AuthorizeNodes(td), spiffe.AuthorizeIdentity(db)), []spiffe.Identity{node1, db}},
		{"any of nothing", spiffe.AuthorizeAnyOf(), nil},
		{"foreign workloads", spiffe.AuthorizeWorkloads(spiffeid.RequireTrustDomainFromString("evil.example")), []spiffe.Identity{evilWeb}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, id := range all {
				want := false
				for _, a := range tt.allowed {
					want = want || a == id
				}
				err := tt.authorize(id)
				if got := err == nil; got != want {
					t.Errorf("%s: allowed = %v, want %v (err %v)", id, got, want, err)
				}
				if err != nil && !errors.Is(err, spiffe.ErrUnauthorized) {
					t.Errorf("%s: error %v does not wrap ErrUnauthorized", id, err)
				}
			}
		})
	}
}

func TestTLSConfigAuthorizer(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	authorize := spiffe.TLSConfigAuthorizer(spiffe.AuthorizeWorkloads(td))
	tests := []struct {
		id      string
		wantErr error
	}{
		{"spiffe://cluster.local/ns/a/sa/b", nil},
		{"spiffe://cluster.local/ambit/node/n", spiffe.ErrUnauthorized},
		{"spiffe://cluster.local/not/ambit", spiffe.ErrInvalidIdentity},
	}
	for _, tt := range tests {
		err := authorize(spiffeid.RequireFromString(tt.id), nil)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("%s: error = %v, want %v", tt.id, err, tt.wantErr)
		}
	}
	if err := spiffe.TLSConfigAuthorizer(nil)(web.ID(), nil); !errors.Is(err, spiffe.ErrUnauthorized) {
		t.Errorf("nil authorizer: error = %v, want ErrUnauthorized", err)
	}
}

func TestVerifyPeer(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	ca := spiffetest.NewCA(t, td)
	bundles := newSource(t, nil, ca.Bundle())
	chain := ca.NewIntermediate(t).MintSVID(t, web).Certificates

	tests := []struct {
		name      string
		chain     []*x509.Certificate
		authorize spiffe.Authorizer
		wantErr   error
	}{
		{"intermediate chain", chain, spiffe.AuthorizeWorkloads(td), nil},
		{"leaf without its intermediate", chain[:1], spiffe.AuthorizeWorkloads(td), spiffe.ErrUntrusted},
		{"empty chain", nil, spiffe.AuthorizeWorkloads(td), spiffe.ErrNoPeerCertificate},
		{"nil authorizer", chain, nil, spiffe.ErrUnauthorized},
		{"custom authorizer error is marked unauthorized", chain, func(spiffe.Identity) error { return errors.New("policy says no") }, spiffe.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := spiffe.VerifyPeer(tt.chain, bundles, tt.authorize)
			if tt.wantErr == nil {
				if err != nil || got != web {
					t.Errorf("VerifyPeer = %v, %v; want %v", got, err, web)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !got.IsZero() {
				t.Errorf("VerifyPeer = %v, %v; want error wrapping %v", got, err, tt.wantErr)
			}
		})
	}
}
