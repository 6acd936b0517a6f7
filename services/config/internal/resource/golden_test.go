package resource

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// storedYAML renders objects in their stored form as YAML documents, the
// golden output format.
func storedYAML(t *testing.T, objs []*Object) []byte {
	t.Helper()
	var out bytes.Buffer
	for i, o := range objs {
		raw, err := o.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal %s %s: %v", o.Kind, o.Metadata.Name, err)
		}
		y, err := yaml.JSONToYAML(raw)
		if err != nil {
			t.Fatalf("to YAML: %v", err)
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(y)
	}
	return out.Bytes()
}

// TestGoldenValid decodes each testdata/valid/<case>.in.yaml, requires every
// object to validate, and compares the canonical stored form with
// <case>.out.yaml (rewritten when UPDATE_GOLDEN=1). The stored form must
// decode again to the same bytes and the same specs.
func TestGoldenValid(t *testing.T) {
	inputs, err := filepath.Glob("testdata/valid/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	kinds := Kinds()
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := kinds.Decode(data)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(objs) == 0 {
				t.Fatal("no objects decoded")
			}
			for _, o := range objs {
				if errs := (ValidateOptions{}).validate(o); len(errs) > 0 {
					t.Errorf("%s %s/%s is invalid: %v", o.Kind, o.Metadata.Namespace, o.Metadata.Name, errs)
				}
			}
			got := storedYAML(t, objs)

			outPath := strings.TrimSuffix(in, ".in.yaml") + ".out.yaml"
			if os.Getenv("UPDATE_GOLDEN") == "1" {
				if err := os.WriteFile(outPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatalf("read golden (run with UPDATE_GOLDEN=1 to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("stored form differs from %s (run with UPDATE_GOLDEN=1 to accept):\n--- got\n%s\n--- want\n%s", outPath, got, want)
			}

			// The stored form is a fixed point: decoding it yields the
			// same objects.
			again, err := kinds.Decode(want)
			if err != nil {
				t.Fatalf("decode golden output: %v", err)
			}
			if len(again) != len(objs) {
				t.Fatalf("golden output has %d objects, want %d", len(again), len(objs))
			}
			for i := range objs {
				if !objs[i].SpecEqual(again[i]) {
					t.Errorf("%s %s: spec changed after a round trip", objs[i].Kind, objs[i].Metadata.Name)
				}
			}
			if regot := storedYAML(t, again); !bytes.Equal(regot, got) {
				t.Errorf("second round trip differs:\n%s", regot)
			}
		})
	}
}

// TestGoldenCoversEveryKind keeps the golden set honest: every accepted
// kind has at least one valid example.
func TestGoldenCoversEveryKind(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/valid/*.in.yaml")
	seen := map[string]bool{}
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Decode(data)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		for _, o := range objs {
			seen[o.Kind] = true
		}
	}
	for _, k := range Kinds().All() {
		if !seen[k.Name()] {
			t.Errorf("no valid golden example of %s", k.Name())
		}
	}
}
