package resource

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TestClusterTrustBundleNames covers the signer-dependent name rule and the
// signer name format, which the golden cases touch only once each.
func TestClusterTrustBundleNames(t *testing.T) {
	tests := []struct {
		name, signer string
		want         string // empty for valid
	}{
		{"ambit.io:cluster.local:bundle", "ambit.io/cluster.local", ""},
		{"example.com:foo:v1", "example.com/foo", ""},
		{"corp-roots", "", ""},
		{"example.com:foo:", "example.com/foo", "the part after"},
		{"example.com:foo:Bad", "example.com/foo", "the part after"},
		{"example.com:bar:v1", "example.com/foo", `must be named "example.com:foo:"`},
		{"a:b", "", `must not contain ":"`},
		{"Corp", "", "invalid name"},
		{"x.io:a:b", "x.io/a/b", "must be a domain and a path"},
		{"localhost:a:b", "localhost/a", "at least two labels"},
		{"ex_ample.com:a:b", "ex_ample.com/a", "domain:"},
		{"example.com:A:b", "example.com/A", "path:"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.signer, func(t *testing.T) {
			errs := validateTrustBundleName(field.NewPath("metadata", "name"), tt.name, tt.signer)
			if tt.signer != "" {
				errs = append(errs, validateSignerName(field.NewPath("spec", "signerName"), tt.signer)...)
			}
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Fatalf("unexpected error: %v", errs)
			case tt.want != "" && (len(errs) == 0 || !strings.Contains(errs.Error(), tt.want)):
				t.Fatalf("errors = %v, want one containing %q", errs, tt.want)
			}
		})
	}
}
