package resource

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestValidateOptions(t *testing.T) {
	policy := decodeOne(t, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: team-a}\nspec: {}\n")
	namespace := decodeOne(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n")
	exists := func(ns string) bool { return ns == "team-b" }

	tests := []struct {
		name string
		obj  *Object
		opts ValidateOptions
		want string // empty for valid
	}{
		{"defaults", policy, ValidateOptions{}, ""},
		{"size cap", policy, ValidateOptions{MaxObjectBytes: 64}, "<root>: object too large"},
		{"size cap names the size", policy, ValidateOptions{MaxObjectBytes: 64}, "bytes: must be at most 64 bytes"},
		{"missing namespace", policy, ValidateOptions{NamespaceExists: exists}, `metadata.namespace: not found "team-a": create the Namespace first`},
		{"cluster-scoped kinds skip the namespace check", namespace, ValidateOptions{NamespaceExists: exists}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate(tt.obj)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestErrorsAreStructured(t *testing.T) {
	_, err := Kinds().DecodeAndValidate([]byte(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: x}
spec:
  rules:
  - from:
    - source: {ipBlocks: ["10.0.0.0/33", "300.1.1.1"]}
`), DecodeOptions{}, ValidateOptions{})
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("no *FieldError in %v", err)
	}
	all := FieldErrors(err)
	if len(all) != 2 {
		t.Fatalf("got %d field errors: %v", len(all), err)
	}
	if all[0].Type != ErrorTypeInvalid || all[0].Field != "spec.rules[0].from[0].source.ipBlocks[0]" || all[0].Value != `"10.0.0.0/33"` {
		t.Errorf("first error = %+v", all[0])
	}
	if all[1].Error() != `spec.rules[0].from[0].source.ipBlocks[1]: invalid IP address "300.1.1.1"` {
		t.Errorf("second error = %s", all[1])
	}
	if got := err.Error(); !strings.HasPrefix(got, "documents[0] (AuthorizationPolicy x/a): ") || !strings.Contains(got, "; ") {
		t.Errorf("aggregate message = %q", got)
	}
	if (ErrorList{}).Err() != nil {
		t.Error("an empty list is not an error")
	}
}

func TestFieldErrorFormat(t *testing.T) {
	p := field.NewPath("spec", "ports").Index(2)
	tests := []struct {
		err  *FieldError
		want string
	}{
		{errRequired(p.Child("name"), ""), "spec.ports[2].name: required"},
		{errRequired(nil, "no object"), "<root>: required: no object"},
		{errInvalid(p.Child("port"), int64(0), "invalid port", "must be between 1 and 65535"), "spec.ports[2].port: invalid port 0: must be between 1 and 65535"},
		{errNotSupported(p.Child("protocol"), "HTTP", []string{"TCP", "UDP"}), `spec.ports[2].protocol: unsupported value "HTTP": supported values: "TCP", "UDP"`},
		{errDuplicate(p.Child("name"), "http", ""), `spec.ports[2].name: duplicate value "http"`},
		{errForbidden(p, nil, "not here"), "spec.ports[2]: forbidden: not here"},
		{errForbidden(p, "x", "not here"), `spec.ports[2]: forbidden value "x": not here`},
		{errTooMany(field.NewPath("spec", "rules"), 17, 16), "spec.rules: too many items 17: must have at most 16"},
		{errTooLong(p, strings.Repeat("a", 300), 253), `spec.ports[2]: value too long "` + strings.Repeat("a", 128) + `...": 300 characters, must be at most 253`},
		{errUnknownField(p, "nmae"), `spec.ports[2]: unknown field "nmae"`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("\n got: %s\nwant: %s", got, tt.want)
		}
	}
}

func TestRuleHelpers(t *testing.T) {
	p := field.NewPath("v")
	tests := []struct {
		name string
		errs ErrorList
		ok   bool
	}{
		{"wildcard alone", validateWildcardMatch(p, "*"), true},
		{"wildcard prefix", validateWildcardMatch(p, "*.example.com"), true},
		{"wildcard suffix", validateWildcardMatch(p, "cluster.local/ns/default/*"), true},
		{"wildcard both ends", validateWildcardMatch(p, "*foo*"), false},
		{"wildcard inside", validateWildcardMatch(p, "a*b"), false},
		{"istio host", validateIstioHost(p, "Reviews.Bookinfo.svc.cluster.local"), true},
		{"istio host wildcard", validateIstioHost(p, "*.example.com"), true},
		{"istio host trailing dot", validateIstioHost(p, "example.com."), true},
		{"istio host numeric tld", validateIstioHost(p, "example.123"), false},
		{"istio host inner wildcard", validateIstioHost(p, "a.*.com"), false},
		{"fqdn rejects wildcard", validateFQDN(p, "*.example.com"), false},
		{"path template", validatePathTemplate(p, "/a/{*}/b/{**}"), true},
		{"path template named var", validatePathTemplate(p, "/a/{id}/{*}"), false},
		{"path template glob", validatePathTemplate(p, "/a/*/{*}"), false},
		{"gateway hostname wildcard", validateGatewayHostname(p, "*.example.com", true), true},
		{"gateway hostname precise", validateGatewayHostname(p, "*.example.com", false), false},
		{"gateway hostname uppercase", validateGatewayHostname(p, "Example.com", true), false},
		{"ip or cidr v6", validateIPOrCIDR(p, "fd00::/64"), true},
		{"ip or cidr zone", validateIP(p, "fe80::1%eth0"), false},
		{"service account ns/name", validateServiceAccountRef(p, "ns/sa"), true},
		{"service account empty ns", validateServiceAccountRef(p, "/sa"), false},
		{"jwks uri", validateJWKSURI(p, "https://example.com:8443/jwks"), true},
		{"jwks uri bad port", validateJWKSURI(p, "https://example.com:0/jwks"), false},
		{"route path", validateRoutePath(p, "/a%20b/c", "Exact"), true},
		{"route path bad escape", validateRoutePath(p, "/a%zz", "Exact"), false},
		{"regex", validateRegex(p, "^/v[0-9]+$"), true},
		{"duration", validateGatewayDuration(p, "1h30m"), true},
		{"duration too many parts", validateGatewayDuration(p, "1h1m1s1ms1h"), false},
	}
	for _, tt := range tests {
		if got := len(tt.errs) == 0; got != tt.ok {
			t.Errorf("%s: ok = %v, want %v (%v)", tt.name, got, tt.ok, tt.errs)
		}
	}
	if got := formatProtoDuration(1500 * 1e6); got != "1.5s" {
		t.Errorf("formatProtoDuration = %s", got)
	}
	if !isPrime(65537) || isPrime(65536) || isPrime(1) {
		t.Error("isPrime is wrong")
	}
}

func TestDecodeAndValidateNamesTheDocument(t *testing.T) {
	input := `
# an empty document first, then a List whose second item is invalid
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: fine}
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny, namespace: fine}
  spec: {action: DENY}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa, namespace: fine}
spec: {mtls: {mode: 7}}
`
	_, err := Kinds().DecodeAndValidate([]byte(input), DecodeOptions{}, ValidateOptions{})
	if err == nil {
		t.Fatal("accepted")
	}
	want := `documents[1] (PeerAuthentication fine/pa): spec.mtls.mode: invalid enum number 7`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	input = strings.Replace(input, "mode: 7", "mode: 3", 1)
	_, err = Kinds().DecodeAndValidate([]byte(input), DecodeOptions{}, ValidateOptions{})
	want = `documents[0].items[1] (AuthorizationPolicy fine/deny): spec.rules: required`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v does not contain %q", err, want)
	}
}
