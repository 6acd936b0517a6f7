package spiffe_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ambitmesh/ambit/pkg/spiffe"
	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestNewSourceValidates(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	ca := spiffetest.NewCA(t, td)
	svid := ca.MintSVID(t, web)

	tests := []struct {
		name    string
		svid    *x509svid.SVID
		bundles []*x509bundle.Bundle
		wantErr string
	}{
		{"svid and bundle", svid, []*x509bundle.Bundle{ca.Bundle()}, ""},
		{"bundle only", nil, []*x509bundle.Bundle{ca.Bundle()}, ""},
		{"nil bundle", svid, []*x509bundle.Bundle{nil}, "bundle 0 is nil"},
		{"empty bundle", svid, []*x509bundle.Bundle{x509bundle.New(td)}, "no X.509 authorities"},
		{"two bundles for one trust domain", svid, []*x509bundle.Bundle{ca.Bundle(), ca.Bundle()}, "two bundles"},
		{"svid without certificates", &x509svid.SVID{ID: web.ID(), PrivateKey: svid.PrivateKey}, nil, "no certificates"},
		{"svid without key", &x509svid.SVID{ID: web.ID(), Certificates: svid.Certificates}, nil, "no private key"},
		{"svid without id", &x509svid.SVID{Certificates: svid.Certificates, PrivateKey: svid.PrivateKey}, nil, "no SPIFFE ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := spiffe.NewSource(tt.svid, tt.bundles...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewSource: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewSource error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSourceGetters(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	ca := spiffetest.NewCA(t, td)
	src := ca.Source(t, node1)

	id, err := src.Identity()
	if err != nil || id != node1 {
		t.Errorf("Identity() = %v, %v; want %v", id, err, node1)
	}
	if _, err := src.GetX509BundleForTrustDomain(td); err != nil {
		t.Errorf("bundle for %s: %v", td, err)
	}
	other := spiffeid.RequireTrustDomainFromString("example.org")
	if _, err := src.GetX509BundleForTrustDomain(other); !errors.Is(err, spiffe.ErrNoBundle) {
		t.Errorf("bundle for %s: error = %v, want ErrNoBundle", other, err)
	}

	empty := newSource(t, nil, ca.Bundle())
	if _, err := empty.GetX509SVID(); !errors.Is(err, spiffe.ErrNoSVID) {
		t.Errorf("GetX509SVID on a bundle-only source: error = %v, want ErrNoSVID", err)
	}
	if _, err := empty.Identity(); !errors.Is(err, spiffe.ErrNoSVID) {
		t.Errorf("Identity on a bundle-only source: error = %v, want ErrNoSVID", err)
	}

	var zero spiffe.Source
	if _, err := zero.GetX509SVID(); !errors.Is(err, spiffe.ErrNoSVID) {
		t.Errorf("zero Source GetX509SVID: error = %v, want ErrNoSVID", err)
	}
	if _, err := zero.GetX509BundleForTrustDomain(td); !errors.Is(err, spiffe.ErrNoBundle) {
		t.Errorf("zero Source bundle: error = %v, want ErrNoBundle", err)
	}
}

// TestSourceCopiesBundles: a caller that keeps mutating its bundle (say,
// while preparing the next rotation step) must not change what the Source
// trusts until it hands the bundle over again.
func TestSourceCopiesBundles(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	ca, extra := spiffetest.NewCA(t, td), spiffetest.NewCA(t, td)
	bundle := ca.Bundle()
	src := newSource(t, nil, bundle)

	bundle.AddX509Authority(extra.Root())
	got, err := src.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	if got.HasX509Authority(extra.Root()) {
		t.Error("Source sees a root added to the caller's bundle after NewSource")
	}
}

func TestSourceUpdateRejectsInvalidAndKeepsOld(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	ca := spiffetest.NewCA(t, td)
	src := ca.Source(t, web)
	before, _ := src.GetX509SVID()

	if err := src.Update(&x509svid.SVID{}, ca.Bundle()); err == nil {
		t.Error("Update with an empty SVID succeeded")
	}
	if err := src.SetSVID(nil); err == nil {
		t.Error("SetSVID(nil) succeeded")
	}
	if err := src.SetBundles(nil); err == nil {
		t.Error("SetBundles(nil) succeeded")
	}
	after, _ := src.GetX509SVID()
	if after != before {
		t.Error("a failed update changed the SVID")
	}
	if _, err := src.GetX509BundleForTrustDomain(td); err != nil {
		t.Errorf("a failed update changed the bundles: %v", err)
	}
}

// TestSourceConcurrentUpdatesKeepBoth: a renewal (SetSVID) racing a bundle
// change (SetBundles) must not undo the other.
func TestSourceConcurrentUpdatesKeepBoth(t *testing.T) {
	td := spiffe.DefaultTrustDomain()
	ca, next := spiffetest.NewCA(t, td), spiffetest.NewCA(t, td)
	svids := make([]*x509svid.SVID, 50)
	for i := range svids {
		svids[i] = ca.MintSVID(t, web)
	}
	for i, svid := range svids {
		src := ca.Source(t, web)
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := src.SetSVID(svid); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if err := src.SetBundles(next.Bundle()); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() { // a reader during the swap, for the race detector
			if _, err := src.GetX509SVID(); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		got, _ := src.GetX509SVID()
		b, err := src.GetX509BundleForTrustDomain(td)
		if got != svid || err != nil || !b.HasX509Authority(next.Root()) {
			t.Fatalf("round %d: lost an update: svid swapped=%v, bundle err=%v", i, got == svid, err)
		}
	}
}
