package resource

import (
	"encoding/json"
	"strings"
	"testing"

	securityv1beta1 "istio.io/api/security/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func decodeOne(t *testing.T, manifest string) *Object {
	t.Helper()
	o, err := Kinds().DecodeOne([]byte(manifest))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return o
}

const denyPolicy = `
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: deny-all
  namespace: bookinfo
  labels: {team: a}
spec:
  action: DENY
  rules: [{}]
status:
  conditions: [{type: Ready, status: "True"}]
`

func TestObjectKey(t *testing.T) {
	tests := []struct {
		manifest string
		want     string
	}{
		{denyPolicy, "security.istio.io/AuthorizationPolicy/bookinfo/deny-all"},
		{"apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo}\n", "core/Namespace/_/bookinfo"},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: bookinfo}\nspec: {ports: [{port: 80}]}\n", "core/Service/bookinfo/reviews"},
		{"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: istio}\nspec: {controllerName: istio.io/gateway-controller}\n", "gateway.networking.k8s.io/GatewayClass/_/istio"},
	}
	for _, tt := range tests {
		if got := decodeOne(t, tt.manifest).Key().String(); got != tt.want {
			t.Errorf("key = %q, want %q", got, tt.want)
		}
	}
	ns, ok := decodeOne(t, denyPolicy).NamespaceKey()
	if !ok || ns.String() != "core/Namespace/_/bookinfo" {
		t.Errorf("NamespaceKey = %v, %v", ns, ok)
	}
	if _, ok := decodeOne(t, tests[1].manifest).NamespaceKey(); ok {
		t.Error("a Namespace has no NamespaceKey")
	}
}

func TestSpecEqualIgnoresMetadataAndStatus(t *testing.T) {
	a := decodeOne(t, denyPolicy)
	b := decodeOne(t, strings.Replace(strings.Replace(denyPolicy, "team: a", "team: b", 1), "Ready", "Stale", 1))
	if !a.SpecEqual(b) {
		t.Error("label and status changes must not count as spec changes")
	}
	c := decodeOne(t, strings.Replace(denyPolicy, "action: DENY", "action: AUDIT", 1))
	if a.SpecEqual(c) {
		t.Error("an action change is a spec change")
	}
	route := decodeOne(t, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns1}\nspec: {}\n")
	if a.SpecEqual(route) || route.SpecEqual(a) {
		t.Error("objects of different kinds are never spec-equal")
	}
	defaulted := decodeOne(t, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns1}\nspec:\n  rules:\n  - matches:\n    - path: {type: PathPrefix, value: /}\n")
	if !route.SpecEqual(defaulted) {
		t.Error("a spec written with its defaults equals the one relying on them")
	}
}

func TestDeepCopyIsIndependent(t *testing.T) {
	orig := decodeOne(t, denyPolicy)
	cp := orig.DeepCopy()
	cp.Metadata.Labels["team"] = "changed"
	cp.Spec.(*securityv1beta1.AuthorizationPolicy).Action = securityv1beta1.AuthorizationPolicy_ALLOW
	cp.Status[0] = ' '
	if orig.Metadata.Labels["team"] != "a" || orig.Spec.(*securityv1beta1.AuthorizationPolicy).Action != securityv1beta1.AuthorizationPolicy_DENY || orig.Status[0] != '{' {
		t.Fatal("copy shares memory with the original")
	}

	route := decodeOne(t, "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns1}\nspec: {hostnames: [a.example.com]}\n")
	rc := route.DeepCopy()
	rc.Spec.(*gatewayv1.HTTPRouteSpec).Hostnames[0] = "b.example.com"
	if route.Spec.(*gatewayv1.HTTPRouteSpec).Hostnames[0] != "a.example.com" {
		t.Fatal("struct spec copy shares memory")
	}

	secret := decodeOne(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns1}\ndata: {k: YWJj}\n")
	sc := secret.DeepCopy()
	sc.Spec.(*SecretContent).Data["k"][0] = 'x'
	if string(secret.Spec.(*SecretContent).Data["k"]) != "abc" {
		t.Fatal("secret copy shares memory")
	}
}

func TestStoredForm(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		want     string
	}{
		{
			"istio kind with status, version converted",
			denyPolicy,
			`{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"labels":{"team":"a"},"name":"deny-all","namespace":"bookinfo"},"spec":{"rules":[{}],"action":"DENY"},"status":{"conditions":[{"status":"True","type":"Ready"}]}}`,
		},
		{
			"secret body at the top level, stringData merged",
			"apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns1}\nstringData: {token: abc}\n",
			`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"ns1"},"type":"Opaque","data":{"token":"YWJj"}}`,
		},
		{
			"namespace has a spec",
			"apiVersion: v1\nkind: Namespace\nmetadata: {name: ns1, creationTimestamp: \"2024-05-01T10:00:00Z\", generation: 3, resourceVersion: \"42\", uid: u-1}\n",
			`{"apiVersion":"v1","kind":"Namespace","metadata":{"creationTimestamp":"2024-05-01T10:00:00Z","generation":3,"name":"ns1","resourceVersion":"42","uid":"u-1"},"spec":{}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := decodeOne(t, tt.manifest)
			raw, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != tt.want {
				t.Errorf("stored form\n got: %s\nwant: %s", raw, tt.want)
			}
			var back Object
			if err := json.Unmarshal(raw, &back); err != nil {
				t.Fatalf("unmarshal stored form: %v", err)
			}
			if !back.SpecEqual(o) || back.Metadata.Name != o.Metadata.Name {
				t.Error("stored form does not decode to the same object")
			}
		})
	}
}

func TestHandBuiltObject(t *testing.T) {
	o := &Object{
		APIVersion: "security.istio.io/v1beta1",
		Kind:       "PeerAuthentication",
		Metadata:   metav1.ObjectMeta{Name: "default", Namespace: "istio-system"},
		Spec: &securityv1beta1.PeerAuthentication{
			Mtls: &securityv1beta1.PeerAuthentication_MutualTLS{Mode: securityv1beta1.PeerAuthentication_MutualTLS_STRICT},
		},
	}
	if err := Validate(o); err != nil {
		t.Fatalf("valid hand-built object rejected: %v", err)
	}
	if got := o.Key().String(); got != "security.istio.io/PeerAuthentication/istio-system/default" {
		t.Errorf("key = %q", got)
	}
	raw, err := o.MarshalJSON()
	if err != nil || !strings.Contains(string(raw), `"spec":{"mtls":{"mode":"STRICT"}}`) {
		t.Errorf("marshal = %s, %v", raw, err)
	}

	o.Spec = &securityv1beta1.AuthorizationPolicy{}
	err = Validate(o)
	if err == nil || !strings.Contains(err.Error(), "spec: invalid spec type *v1beta1.AuthorizationPolicy") {
		t.Errorf("wrong spec type: %v", err)
	}
	if _, err := o.MarshalJSON(); err == nil {
		t.Error("marshal of a wrong spec type must fail")
	}

	unknown := &Object{APIVersion: "example.com/v1", Kind: "Widget"}
	if err := Validate(unknown); err == nil || !strings.Contains(err.Error(), `kind: unsupported value "Widget"`) {
		t.Errorf("unknown kind: %v", err)
	}
	if err := Validate(&Object{}); err == nil {
		t.Error("empty object accepted")
	}
	if err := Validate(nil); err == nil {
		t.Error("nil object accepted")
	}
}
