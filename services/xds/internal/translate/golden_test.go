package translate

import (
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/ambitmesh/ambit/pkg/changefeed"
)

// TestGolden runs every testdata/in/<case>.yaml through a full Reset and
// compares both stages: the index (<case>.index.yaml) and the resources
// (<case>.xds.yaml).
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no golden cases")
	}
	for _, in := range cases {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			objs := loadObjects(t, in)
			tr := New(Options{})
			deltas := tr.Reset(changefeed.Snapshot{Revision: 1, Objects: objs})
			if tr.Invalid() != 0 {
				t.Errorf("%d objects could not be decoded", tr.Invalid())
			}
			dump, err := yaml.Marshal(tr.Index().Dump())
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata/out", name+".index.yaml"), dump)
			golden(t, filepath.Join("testdata/out", name+".xds.yaml"), renderDeltas(t, deltas))
		})
	}
}
