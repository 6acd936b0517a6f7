package resource

import (
	"testing"
)

func TestKindTableCanonicalVersions(t *testing.T) {
	tests := []struct {
		apiVersion, kind string
		wantStorage      string
		wantKeyGroup     string
		namespaced       bool
	}{
		{"v1", "Namespace", "v1", "core", false},
		{"v1", "Service", "v1", "core", true},
		{"v1", "Pod", "v1", "core", true},
		{"v1", "Secret", "v1", "core", true},
		{"security.istio.io/v1", "AuthorizationPolicy", "security.istio.io/v1", "security.istio.io", true},
		{"security.istio.io/v1beta1", "AuthorizationPolicy", "security.istio.io/v1", "security.istio.io", true},
		{"security.istio.io/v1beta1", "PeerAuthentication", "security.istio.io/v1", "security.istio.io", true},
		{"security.istio.io/v1beta1", "RequestAuthentication", "security.istio.io/v1", "security.istio.io", true},
		{"networking.istio.io/v1alpha3", "ServiceEntry", "networking.istio.io/v1", "networking.istio.io", true},
		{"networking.istio.io/v1beta1", "WorkloadEntry", "networking.istio.io/v1", "networking.istio.io", true},
		{"networking.istio.io/v1alpha3", "DestinationRule", "networking.istio.io/v1", "networking.istio.io", true},
		{"gateway.networking.k8s.io/v1beta1", "GatewayClass", "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io", false},
		{"gateway.networking.k8s.io/v1beta1", "Gateway", "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io", true},
		{"gateway.networking.k8s.io/v1beta1", "HTTPRoute", "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io", true},
		{"gateway.networking.k8s.io/v1", "GRPCRoute", "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io", true},
		{"gateway.networking.k8s.io/v1beta1", "ReferenceGrant", "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io", true},
		{"certificates.k8s.io/v1", "ClusterTrustBundle", "certificates.k8s.io/v1", "certificates.k8s.io", false},
		{"certificates.k8s.io/v1beta1", "ClusterTrustBundle", "certificates.k8s.io/v1", "certificates.k8s.io", false},
		{"certificates.k8s.io/v1alpha1", "ClusterTrustBundle", "certificates.k8s.io/v1", "certificates.k8s.io", false},
	}
	kinds := Kinds()
	for _, tt := range tests {
		t.Run(tt.apiVersion+"/"+tt.kind, func(t *testing.T) {
			k, ok := kinds.ByAPIVersionKind(tt.apiVersion, tt.kind)
			if !ok {
				t.Fatal("not found")
			}
			if got := k.StorageAPIVersion(); got != tt.wantStorage {
				t.Errorf("storage apiVersion = %q, want %q", got, tt.wantStorage)
			}
			if got := k.KeyGroup(); got != tt.wantKeyGroup {
				t.Errorf("key group = %q, want %q", got, tt.wantKeyGroup)
			}
			if k.Namespaced() != tt.namespaced {
				t.Errorf("namespaced = %v, want %v", k.Namespaced(), tt.namespaced)
			}
			byGK, ok := kinds.ByGroupKind(tt.wantKeyGroup, tt.kind)
			if !ok || byGK != k {
				t.Errorf("ByGroupKind(%q, %q) did not find the same kind", tt.wantKeyGroup, tt.kind)
			}
			if !k.spec.owns(k.NewSpec()) {
				t.Errorf("NewSpec returned %T, which the kind does not own", k.NewSpec())
			}
		})
	}
	listed := map[string]bool{}
	for _, tt := range tests {
		listed[tt.kind] = true
	}
	if got := len(kinds.All()); got != len(listed) {
		t.Errorf("table has %d kinds, test lists %d", got, len(listed))
	}
}

func TestKindTableRejects(t *testing.T) {
	kinds := Kinds()
	tests := []struct {
		apiVersion, kind, want string
	}{
		{"networking.istio.io/v1", "VirtualService", `kind: unsupported value "VirtualService"`},
		{"gateway.networking.k8s.io/v1alpha2", "GRPCRoute", `apiVersion: unsupported value "gateway.networking.k8s.io/v1alpha2": supported values: "gateway.networking.k8s.io/v1"`},
		{"core/v1", "Pod", `apiVersion: invalid apiVersion "core/v1"`},
		{"v2", "Pod", `apiVersion: unsupported value "v2"`},
		{"security.istio.io/v1", "Pod", `kind: unsupported value "Pod": supported values: "AuthorizationPolicy"`},
	}
	for _, tt := range tests {
		_, err := kinds.lookup(tt.apiVersion, tt.kind)
		if err == nil {
			t.Errorf("%s %s accepted", tt.apiVersion, tt.kind)
			continue
		}
		if got := err.Error(); len(got) < len(tt.want) || got[:len(tt.want)] != tt.want {
			t.Errorf("%s %s: got %q, want prefix %q", tt.apiVersion, tt.kind, got, tt.want)
		}
	}
}

func TestKindTablesAreIndependent(t *testing.T) {
	a, b := Kinds(), Kinds()
	all := a.All()
	all[0] = nil
	if a.All()[0] == nil {
		t.Fatal("All exposes the table's own slice")
	}
	ka, _ := a.ByGroupKind("core", "Pod")
	kb, _ := b.ByGroupKind("core", "Pod")
	if ka == kb {
		t.Fatal("two tables share Kind values")
	}
	versions := ka.Versions()
	versions[0] = "v9"
	if ka.StorageVersion() != "v1" || ka.Versions()[0] != "v1" {
		t.Fatal("Versions exposes the kind's own slice")
	}
}
