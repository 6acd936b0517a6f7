package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	in := `
# leading comment only
---
apiVersion: v1
kind: Namespace
metadata: {name: demo}
--- # second
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: demo}
spec: {}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: a, namespace: demo}, spec: {}}
- {apiVersion: v1, kind: Service, metadata: {name: b, namespace: demo}, spec: {}}
`
	docs, err := Split("in.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, Ref(d.APIVersion, d.Kind, d.Name)+"@"+d.Source)
	}
	want := "namespace/demo@in.yaml#2,authorizationpolicy.security.istio.io/deny@in.yaml#3,service/a@in.yaml#5.items[0],service/b@in.yaml#5.items[1]"
	if strings.Join(got, ",") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, ","), want)
	}
}

func TestSplitErrorNamesDocument(t *testing.T) {
	_, err := Split("bad.yaml", []byte("a: b\n---\nkey: [unclosed\n"))
	if err == nil || !strings.Contains(err.Error(), "bad.yaml#2") {
		t.Fatalf("error %v does not name bad.yaml#2", err)
	}
}

func TestReadDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "c.yml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n"), 0o644)

	for _, tc := range []struct {
		recursive bool
		want      string
	}{{false, "a,b"}, {true, "a,b,c"}} {
		docs, err := Read([]string{dir}, tc.recursive, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, d := range docs {
			names = append(names, d.Name)
		}
		if strings.Join(names, ",") != tc.want {
			t.Errorf("recursive=%v: %v, want %s", tc.recursive, names, tc.want)
		}
	}
}
