package resource

import (
	"errors"
	"strings"
	"testing"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"
)

func TestDecodeDocuments(t *testing.T) {
	tests := []struct {
		name      string
		input     string
		opts      DecodeOptions
		wantKinds []string
	}{
		{"empty input", "", DecodeOptions{}, nil},
		{"only comments and separators", "# hello\n---\n---\n", DecodeOptions{}, nil},
		{"multi-document YAML", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n", DecodeOptions{}, []string{"Namespace", "Namespace"}},
		{"JSON stream", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}} {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}`, DecodeOptions{}, []string{"Namespace", "Namespace"}},
		{"typed list", "apiVersion: v1\nkind: ServiceList\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a, namespace: x}\n  spec: {ports: [{port: 80}]}\n", DecodeOptions{}, []string{"Service"}},
		{"byte order mark and CRLF", "\xef\xbb\xbfapiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: a\r\n", DecodeOptions{}, []string{"Namespace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Kinds().DecodeWith([]byte(tt.input), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.Kind)
			}
			if strings.Join(kinds, ",") != strings.Join(tt.wantKinds, ",") {
				t.Errorf("kinds = %v, want %v", kinds, tt.wantKinds)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string // substrings of the error, in order
	}{
		{
			"unknown metadata field",
			"apiVersion: v1\nkind: Namespace\nmetadata: {name: a, lables: {x: y}}\n",
			[]string{`documents[0] (Namespace a): metadata: unknown field "lables"`},
		},
		{
			"field names are case-sensitive",
			"apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\nSpec: {}\n",
			[]string{`<root>: unknown field "Spec"`},
		},
		{
			"proto value of the wrong type",
			"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: x}\nspec: {rules: {from: []}}\n",
			[]string{`spec.rules: invalid value of type object: must be an array`},
		},
		{
			"proto integer out of range",
			"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a, namespace: x}\nspec: {hosts: [a.example.com], ports: [{number: -1, name: http}]}\n",
			[]string{`spec.ports[0].number: invalid integer -1: must be an integer between 0 and 4294967295`},
		},
		{
			"status must be an object",
			"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: x}\nstatus: [1]\n",
			[]string{`status: invalid value of type array: must be an object`},
		},
		{
			"a Secret has no status",
			"apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: x}\nstatus: {}\n",
			[]string{`<root>: unknown field "status"`},
		},
		{
			"every failing document is reported",
			"apiVersion: v1\nkind: Namespace\nmetadata: {name: a, x: 1}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: Nope\n",
			[]string{`documents[0] (Namespace a): metadata: unknown field "x"`, `documents[2] (Nope): kind: unsupported value "Nope"`},
		},
		{
			"list items are located",
			"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b, namespace: c, bogus: 1}\n",
			[]string{`documents[0].items[1] (Namespace c/b): metadata: unknown field "bogus"`},
		},
		{
			"missing apiVersion and kind",
			"metadata: {name: a}\n",
			[]string{`apiVersion: required`, `kind: required`},
		},
		{
			"document that is not an object",
			"- a\n- b\n",
			[]string{`<root>: invalid value of type array: must be an object`},
		},
		{
			"bad YAML separator",
			"apiVersion: v1\n--- junk\n",
			[]string{`invalid YAML document`},
		},
		{
			"deeply nested JSON",
			`{"apiVersion":"v1","kind":"Namespace","metadata":` + strings.Repeat(`{"a":`, 150) + "1" + strings.Repeat("}", 151),
			[]string{`nesting too deep`},
		},
		{
			"YAML 1.1 booleans are not strings",
			"apiVersion: v1\nkind: Namespace\nmetadata: {name: no}\n",
			[]string{`metadata.name: invalid value of type boolean false: must be a string`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Decode([]byte(tt.input))
			if err == nil {
				t.Fatalf("decoded %d objects, want an error", len(objs))
			}
			if objs != nil {
				t.Error("objects returned with an error")
			}
			msg := err.Error()
			pos := 0
			for _, w := range tt.want {
				i := strings.Index(msg[pos:], w)
				if i < 0 {
					t.Fatalf("error %q\ndoes not contain (in order) %q", msg, w)
				}
				pos += i + len(w)
			}
			var de *DocumentError
			if !errors.As(err, &de) {
				t.Errorf("error is not a *DocumentError: %T", err)
			}
		})
	}
}

func TestDecodeCanonicalizes(t *testing.T) {
	t.Run("istio accepts proto names, enum numbers and Go durations", func(t *testing.T) {
		o := decodeOne(t, `
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: d, namespace: x}
spec:
  host: reviews
  traffic_policy:
    connectionPool:
      tcp: {connectTimeout: 1m30s, max_connections: "10"}
    tls: {mode: 3}
`)
		dr := o.Spec.(*networkingv1alpha3.DestinationRule)
		if o.APIVersion != "networking.istio.io/v1" {
			t.Errorf("apiVersion = %s", o.APIVersion)
		}
		if got := dr.GetTrafficPolicy().GetConnectionPool().GetTcp().GetConnectTimeout().AsDuration().String(); got != "1m30s" {
			t.Errorf("connectTimeout = %s", got)
		}
		if dr.GetTrafficPolicy().GetConnectionPool().GetTcp().GetMaxConnections() != 10 {
			t.Error("quoted integer not decoded")
		}
		if dr.GetTrafficPolicy().GetTls().GetMode() != networkingv1alpha3.ClientTLSSettings_ISTIO_MUTUAL {
			t.Error("enum number not decoded")
		}
		raw, _ := o.MarshalJSON()
		if !strings.Contains(string(raw), `"trafficPolicy":{"connectionPool":{"tcp":{"maxConnections":10,"connectTimeout":"90s"}},"tls":{"mode":"ISTIO_MUTUAL"}}`) {
			t.Errorf("stored form not canonical: %s", raw)
		}
	})
	t.Run("default namespace", func(t *testing.T) {
		objs, err := Kinds().DecodeWith([]byte("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n"), DecodeOptions{DefaultNamespace: "team-a"})
		if err != nil {
			t.Fatal(err)
		}
		if objs[0].Metadata.Namespace != "team-a" || objs[1].Metadata.Namespace != "" {
			t.Errorf("namespaces = %q, %q", objs[0].Metadata.Namespace, objs[1].Metadata.Namespace)
		}
	})
	t.Run("core defaults", func(t *testing.T) {
		svc := decodeOne(t, "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\nspec: {ports: [{port: 8080}]}\n").Spec.(*corev1.ServiceSpec)
		if svc.Type != corev1.ServiceTypeClusterIP || svc.Ports[0].Protocol != corev1.ProtocolTCP || svc.Ports[0].TargetPort.IntVal != 8080 {
			t.Errorf("service defaults not applied: %+v", svc)
		}
		pod := decodeOne(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {}\n").Spec.(*corev1.PodSpec)
		if pod.ServiceAccountName != "default" {
			t.Errorf("service account = %q", pod.ServiceAccountName)
		}
	})
	t.Run("status is kept verbatim for controller-owned kinds", func(t *testing.T) {
		o := decodeOne(t, "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: x}\nstatus: {observedGeneration: 3, conditions: []}\n")
		if string(o.Status) != `{"conditions":[],"observedGeneration":3}` {
			t.Errorf("status = %s", o.Status)
		}
		if _, ok := o.Spec.(*securityv1beta1.PeerAuthentication); !ok {
			t.Errorf("spec type %T", o.Spec)
		}
	})
}
