package translate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/ambitmesh/ambit/pkg/changefeed"
	security "github.com/ambitmesh/ambit/proto/istio/security"
	workloadpb "github.com/ambitmesh/ambit/proto/istio/workload"
	"github.com/ambitmesh/ambit/services/xds/internal/snapshot"
)

// updateGolden rewrites golden files instead of comparing (UPDATE_GOLDEN=1
// as DESIGN §7 prescribes; -update also works).
var updateGolden = flag.Bool("update", os.Getenv("UPDATE_GOLDEN") == "1", "rewrite golden files")

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// loadObjects reads a multi-document manifest of stored objects.
func loadObjects(t testing.TB, path string) []changefeed.Object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []changefeed.Object
	for i, doc := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		obj, err := storedObject([]byte(doc))
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		out = append(out, obj)
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// storedObject converts one YAML document to the feed's form: its JSON
// and its key.
func storedObject(doc []byte) (changefeed.Object, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return changefeed.Object{}, err
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return changefeed.Object{}, err
	}
	group := changefeed.CoreGroup
	if g, _, ok := strings.Cut(head.APIVersion, "/"); ok {
		group = g
	}
	ns := head.Metadata.Namespace
	if ns == "" {
		ns = changefeed.ClusterScoped
	}
	ref := changefeed.ResourceRef{Group: group, Kind: head.Kind, Namespace: ns, Name: head.Metadata.Name}
	if err := ref.Validate(); err != nil {
		return changefeed.Object{}, err
	}
	return changefeed.Object{Ref: ref, Value: js}, nil
}

// golden compares got with the file, or rewrites it.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with UPDATE_GOLDEN=1 to accept):\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the first differing lines.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, wl, gl)
		}
	}
	return "(equal)"
}

// renderedResource is one resource in the xds golden files.
type renderedResource struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Aliases  []string `json:"aliases,omitempty"`
	Resource any      `json:"resource"`
}

// renderDeltas renders the upserts of deltas, per type, as YAML with IPs
// readable.
func renderDeltas(t testing.TB, deltas []snapshot.Delta) []byte {
	t.Helper()
	out := map[string][]renderedResource{}
	for _, d := range deltas {
		key := map[string]string{AddressTypeURL: "addresses", AuthorizationTypeURL: "authorizations"}[d.TypeURL]
		for _, r := range d.Upserts {
			out[key] = append(out[key], renderedResource{
				Name: r.Name, Version: r.Version, Aliases: r.Aliases, Resource: readable(t, r),
			})
		}
	}
	b, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readable decodes a resource's body into generic JSON with the bytes
// fields that hold IPs shown as IPs.
func readable(t testing.TB, r *snapshot.Resource) any {
	var m proto.Message
	switch r.Body.GetTypeUrl() {
	case AddressTypeURL:
		m = &workloadpb.Address{}
	case AuthorizationTypeURL:
		m = &security.Authorization{}
	default:
		t.Fatalf("unexpected type %s", r.Body.GetTypeUrl())
	}
	if err := proto.Unmarshal(r.Body.GetValue(), m); err != nil {
		t.Fatal(err)
	}
	js, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatal(err)
	}
	return ipsReadable(v, "")
}

func ipsReadable(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = ipsReadable(e, k)
		}
	case []any:
		for i, e := range x {
			x[i] = ipsReadable(e, key)
		}
	case string:
		if key == "address" || key == "addresses" {
			if b, err := base64.StdEncoding.DecodeString(x); err == nil {
				if a, ok := netip.AddrFromSlice(b); ok {
					return a.String()
				}
			}
		}
	}
	return v
}
