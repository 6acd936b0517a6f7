package authz

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	security "github.com/ambitmesh/ambit/proto/istio/security"
	"github.com/ambitmesh/ambit/services/xds/internal/translate/model"
)

func policy(ns string, spec *securityv1beta1.AuthorizationPolicy) *model.AuthorizationPolicy {
	return &model.AuthorizationPolicy{
		Namespace: model.A(ns), Name: "p", Spec: spec,
		Selector: model.LabelsFrom(spec.GetSelector().GetMatchLabels()),
	}
}

func TestEnforced(t *testing.T) {
	tests := []struct {
		name string
		p    *model.AuthorizationPolicy
		want bool
	}{
		{"allow", policy("ns", &securityv1beta1.AuthorizationPolicy{}), true},
		{"deny", policy("ns", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_DENY}), true},
		{"custom", policy("ns", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_CUSTOM}), false},
		{"audit", policy("ns", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_AUDIT}), false},
		{"targetRef", policy("ns", &securityv1beta1.AuthorizationPolicy{TargetRef: &typev1beta1.PolicyTargetReference{Name: "x"}}), false},
		{"targetRefs", policy("ns", &securityv1beta1.AuthorizationPolicy{TargetRefs: []*typev1beta1.PolicyTargetReference{{Name: "x"}}}), false},
		{"dry-run", &model.AuthorizationPolicy{Namespace: model.A("ns"), DryRun: true, Spec: &securityv1beta1.AuthorizationPolicy{}}, false},
	}
	for _, tc := range tests {
		if got, reason := Enforced(tc.p); got != tc.want || (got == (reason != "")) {
			t.Errorf("%s: Enforced = %t %q, want %t", tc.name, got, reason, tc.want)
		}
		if out, _ := Convert(tc.p, "root"); (out != nil) != tc.want {
			t.Errorf("%s: Convert = %v", tc.name, out)
		}
	}
}

func TestConvertScopeAndL7(t *testing.T) {
	sel := &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "a"}}
	l7Rule := &securityv1beta1.Rule{To: []*securityv1beta1.Rule_To{{Operation: &securityv1beta1.Operation{Methods: []string{"GET"}, Ports: []string{"80"}}}}}
	l4Rule := &securityv1beta1.Rule{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{Namespaces: []string{"x"}}}}}
	tests := []struct {
		name        string
		ns          string
		spec        *securityv1beta1.AuthorizationPolicy
		wantScope   security.Scope
		wantGroups  int
		wantDropped []string
	}{
		{"selector", "ns", &securityv1beta1.AuthorizationPolicy{Selector: sel}, security.Scope_WORKLOAD_SELECTOR, 0, nil},
		{"namespace", "ns", &securityv1beta1.AuthorizationPolicy{}, security.Scope_NAMESPACE, 0, nil},
		{"global", "root", &securityv1beta1.AuthorizationPolicy{}, security.Scope_GLOBAL, 0, nil},
		{"root with selector", "root", &securityv1beta1.AuthorizationPolicy{Selector: sel}, security.Scope_WORKLOAD_SELECTOR, 0, nil},
		{"allow drops L7 rules", "ns", &securityv1beta1.AuthorizationPolicy{Rules: []*securityv1beta1.Rule{l7Rule, l4Rule}}, security.Scope_NAMESPACE, 1, []string{"methods"}},
		{"deny keeps their L4 part", "ns", &securityv1beta1.AuthorizationPolicy{Action: securityv1beta1.AuthorizationPolicy_DENY, Rules: []*securityv1beta1.Rule{l7Rule, l4Rule}}, security.Scope_NAMESPACE, 2, []string{"methods"}},
		{"unknown when key", "ns", &securityv1beta1.AuthorizationPolicy{Rules: []*securityv1beta1.Rule{{When: []*securityv1beta1.Condition{{Key: "request.headers[x]", Values: []string{"y"}}}}}}, security.Scope_NAMESPACE, 0, []string{"request.headers[x]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, dropped := Convert(policy(tc.ns, tc.spec), "root")
			if out.Scope != tc.wantScope || len(out.Groups) != tc.wantGroups || !slices.Equal(dropped, tc.wantDropped) {
				t.Errorf("scope %v groups %d dropped %v; want %v %d %v", out.Scope, len(out.Groups), dropped, tc.wantScope, tc.wantGroups, tc.wantDropped)
			}
		})
	}
}

func TestConversionHelpers(t *testing.T) {
	if got := ports([]string{"80", "65535", "65536", "-1", "x"}); !slices.Equal(got, []uint32{80, 65535}) {
		t.Errorf("ports = %v", got)
	}
	got := addresses([]string{"10.0.0.1", "10.0.0.0/8", "::1", "bad", "1.2.3.4/33"})
	want := []*security.Address{
		{Address: []byte{10, 0, 0, 1}, Length: 32},
		{Address: []byte{10, 0, 0, 0}, Length: 8},
		{Address: make16(1), Length: 128},
	}
	if len(got) != len(want) {
		t.Fatalf("addresses = %v", got)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("addresses[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	sas := serviceAccounts([]string{"a", "other/b"}, "ns")
	if sas[0].Namespace != "ns" || sas[0].ServiceAccount != "a" || sas[1].Namespace != "other" || sas[1].ServiceAccount != "b" {
		t.Errorf("serviceAccounts = %v", sas)
	}
}

func make16(last byte) []byte {
	b := make([]byte, 16)
	b[15] = last
	return b
}
