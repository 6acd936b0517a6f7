package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseKind(t *testing.T) {
	for _, tc := range []struct{ in, kind, group string }{
		{"svc", "Service", ""},
		{"services", "service", ""},
		{"Service", "service", ""},
		{"authorizationpolicies", "authorizationpolicy", ""},
		{"ap", "AuthorizationPolicy", ""},
		{"gateways.gateway.networking.k8s.io", "gateway", "gateway.networking.k8s.io"},
		{"httproutes", "httproute", ""},
		{"serviceentries", "serviceentry", ""},
		{"ns", "Namespace", ""},
		{"pods", "pod", ""},
		{"peerauthentication", "peerauthentication", ""},
	} {
		ref := parseKind(tc.in)
		if ref.GetKind() != tc.kind || ref.GetGroup() != tc.group {
			t.Errorf("parseKind(%q) = %q/%q, want %q/%q", tc.in, ref.GetGroup(), ref.GetKind(), tc.group, tc.kind)
		}
	}
}

func TestParseTarget(t *testing.T) {
	ref, err := parseTarget([]string{"ap/allow-frontend"})
	if err != nil || ref.GetKind() != "AuthorizationPolicy" || ref.GetName() != "allow-frontend" {
		t.Fatalf("parseTarget(ap/allow-frontend) = %v, %v", ref, err)
	}
	ref, err = parseTarget([]string{"service", "echo"})
	if err != nil || ref.GetKind() != "service" || ref.GetName() != "echo" {
		t.Fatalf("parseTarget(service echo) = %v, %v", ref, err)
	}
	for _, bad := range [][]string{{"service"}, {"service/"}, {}, {"a", "b", "c"}} {
		if _, err := parseTarget(bad); err == nil {
			t.Errorf("parseTarget(%q) accepted", bad)
		}
	}
}

func TestPrintTable(t *testing.T) {
	objs := [][]byte{
		[]byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"echo","namespace":"shop","creationTimestamp":"2020-01-01T00:00:00Z"},"spec":{"clusterIP":"10.96.0.10","ports":[{"port":80,"protocol":"TCP"},{"port":53,"protocol":"UDP"}]}}`),
	}
	var buf bytes.Buffer
	if err := printObjects(&buf, objs, "", true, false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"NAMESPACE", "CLUSTER-IP", "shop", "echo", "10.96.0.10", "80/TCP,53/UDP"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	if err := printObjects(&buf, objs, "yaml", false, true); err != nil || !strings.Contains(buf.String(), "clusterIP: 10.96.0.10") {
		t.Fatalf("yaml output: %v\n%s", err, buf.String())
	}
	if err := printObjects(&buf, objs, "xml", false, true); err == nil {
		t.Fatal("unknown output format accepted")
	}
}
