//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigThroughAmbitctl drives two ambit-config replicas with ambitctl
// as an operator would, checking output and exit codes a script relies on.
func TestConfigThroughAmbitctl(t *testing.T) {
	bin := BinDir(t)
	s := Stack(t)
	replicas := ConfigReplicas(t, bin, s, 2)
	demo := filepath.Join(RepoRoot(t), "deploy", "local", "demo")
	run := func(args ...string) Result { return Ambitctl(t, bin, replicas, args...) }

	r := run("apply", "-f", demo)
	if r.Code != 0 || !strings.Contains(r.Stdout, "authorizationpolicy.security.istio.io/echo-allow-frontend created") || !strings.Contains(r.Stdout, "service/echo created") {
		t.Fatalf("apply: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = run("apply", "-f", demo)
	if r.Code != 0 || strings.Count(r.Stdout, " unchanged") != 6 {
		t.Fatalf("re-apply: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// A dry run reports the change and stores nothing.
	changed := filepath.Join(t.TempDir(), "svc.yaml")
	os.WriteFile(changed, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: shop}\nspec: {selector: {app: echo}, ports: [{name: http, port: 81, targetPort: 8080}]}\n"), 0o644)
	r = run("apply", "--dry-run", "-f", changed)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "service/echo configured (dry run)" {
		t.Fatalf("dry run: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = run("get", "svc", "echo", "-n", "shop", "-o", "json")
	var svc struct {
		Spec struct {
			ClusterIP string `json:"clusterIP"`
			Ports     []struct {
				Port int `json:"port"`
			} `json:"ports"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &svc); err != nil || r.Code != 0 {
		t.Fatalf("get -o json: %v, code %d\n%s%s", err, r.Code, r.Stdout, r.Stderr)
	}
	if svc.Spec.Ports[0].Port != 80 || svc.Spec.ClusterIP == "" {
		t.Fatalf("after a dry run the service is %+v", svc.Spec)
	}

	// Invalid config: exit 1, the field path and value on stderr, nothing stored.
	r = run("apply", "-f", filepath.Join(RepoRoot(t), "deploy", "local", "invalid-policy.yaml"))
	if r.Code != 1 || !strings.Contains(r.Stderr, `spec.rules[0].from[0].source.ipBlocks[1]: invalid CIDR "10.0.0.0/33"`) {
		t.Fatalf("invalid apply: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r = run("get", "ap", "broken", "-n", "shop"); r.Code != 1 || !strings.Contains(r.Stderr, "not found") {
		t.Fatalf("get of the rejected policy: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// Tables, selectors and all namespaces.
	r = run("get", "services", "-A", "-l", "app=echo")
	if r.Code != 0 || !strings.Contains(r.Stdout, "CLUSTER-IP") || !strings.Contains(r.Stdout, "echo") || strings.Contains(r.Stdout, "inventory") {
		t.Fatalf("get -A -l: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// Status and wait work with no proxy connected (nothing to wait for).
	if r = run("status", "ap/echo-allow-frontend", "-n", "shop"); r.Code != 0 || !strings.Contains(r.Stdout, "0/0 proxies converged") {
		t.Fatalf("status: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r = run("wait", "--for=converged", "ap/echo-allow-frontend", "-n", "shop", "--timeout=10s"); r.Code != 0 {
		t.Fatalf("wait: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// Usage errors exit 2.
	if r = run("wait", "--for=ready", "ap/x"); r.Code != 2 {
		t.Fatalf("bad --for: code %d, want 2\n%s", r.Code, r.Stderr)
	}

	// Delete from the manifests, then nothing is left of them.
	r = run("delete", "-f", filepath.Join(demo, "20-policies.yaml"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "authorizationpolicy.security.istio.io/echo-allow-frontend deleted") {
		t.Fatalf("delete -f: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r = run("get", "ap", "-n", "shop"); r.Code != 0 || !strings.Contains(r.Stdout, "No resources found") {
		t.Fatalf("get after delete: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// Deleting a namespace deletes what is in it.
	if r = run("delete", "ns/shop"); r.Code != 0 {
		t.Fatalf("delete ns: code %d\n%s", r.Code, r.Stderr)
	}
	if r = run("get", "svc", "-n", "shop"); r.Code != 0 || !strings.Contains(r.Stdout, "No resources found") {
		t.Fatalf("services after deleting the namespace: code %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
