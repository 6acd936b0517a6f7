package clustertrustbundle

import (
	"crypto/x509"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ambitmesh/ambit/pkg/spiffe/spiffetest"

	"github.com/ambitmesh/ambit/services/ca/internal/bundle"
)

func TestNaming(t *testing.T) {
	tests := []struct {
		td, signer, name string
		wantErr          string
	}{
		{"cluster.local", "ambit.io/cluster.local", "ambit.io:cluster.local:bundle", ""},
		{"prod-eu.example.com", "ambit.io/prod-eu.example.com", "ambit.io:prod-eu.example.com:bundle", ""},
		{"my_domain", "ambit.io/my_domain", "ambit.io:my_domain:bundle", `label "my_domain"`},
		{"-x.local", "ambit.io/-x.local", "ambit.io:-x.local:bundle", `label "-x"`},
	}
	for _, tt := range tests {
		t.Run(tt.td, func(t *testing.T) {
			td := spiffeid.RequireTrustDomainFromString(tt.td)
			if got := SignerName(td); got != tt.signer {
				t.Errorf("SignerName = %q, want %q", got, tt.signer)
			}
			if got := Name(td); got != tt.name {
				t.Errorf("Name = %q, want %q", got, tt.name)
			}
			err := CheckTrustDomain(td)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckTrustDomain: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckTrustDomain = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

var testTD = spiffeid.RequireTrustDomainFromString("cluster.local")

// testBundle is version v of a bundle holding roots.
func testBundle(v uint64, roots ...*x509.Certificate) *bundle.Bundle {
	return &bundle.Bundle{Version: v, TrustDomain: testTD, Roots: roots}
}

func TestDesiredDeduplicatesRoots(t *testing.T) {
	a, b := spiffetest.NewCA(t, testTD).Root(), spiffetest.NewCA(t, testTD).Root()
	o := desired(testBundle(7, a, b, a))
	if got := strings.Count(o.Spec.TrustBundle, "BEGIN CERTIFICATE"); got != 2 {
		t.Fatalf("trustBundle holds %d certificates, want 2", got)
	}
	raw, err := o.manifest("42")
	if err != nil {
		t.Fatal(err)
	}
	v, roots, err := Roots(raw)
	if err != nil || v != 7 || len(roots) != 2 || !roots[0].Equal(a) || !roots[1].Equal(b) {
		t.Fatalf("Roots = %d, %d roots, %v", v, len(roots), err)
	}
	for _, s := range []string{`"resourceVersion":"42"`, `"signerName":"ambit.io/cluster.local"`, `"ambit.io/bundle-version":"7"`, `"name":"ambit.io:cluster.local:bundle"`} {
		if !strings.Contains(string(raw), s) {
			t.Errorf("manifest %s lacks %s", raw, s)
		}
	}
}

func TestDecide(t *testing.T) {
	a, b := spiffetest.NewCA(t, testTD).Root(), spiffetest.NewCA(t, testTD).Root()
	want := desired(testBundle(5, a, b))
	stored := func(o object, mod func(*object)) *object {
		mod(&o)
		return &o
	}
	tests := []struct {
		name   string
		stored *object
		want   action
	}{
		{"absent", nil, write},
		{"older version", ptr(desired(testBundle(4, a))), write},
		{"same version, same roots", ptr(desired(testBundle(5, a, b))), upToDate},
		{"same version, edited roots", ptr(desired(testBundle(5, a))), write},
		{"newer version", ptr(desired(testBundle(6, b))), newerExist},
		{"no version annotation", stored(want, func(o *object) { o.Metadata.Annotations = nil }), write},
		{"unparsable version", stored(want, func(o *object) { o.Metadata.Annotations = map[string]string{VersionAnnotation: "x"} }), write},
		{"labels differ only", stored(want, func(o *object) { o.Metadata.Labels = nil }), upToDate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decide(tt.stored, want); got != tt.want {
				t.Fatalf("decide = %s, want %s", got, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
