package resource

import (
	"os"
	"path/filepath"
	"testing"
)

func BenchmarkDecodeValidate(b *testing.B) {
	files, _ := filepath.Glob("testdata/valid/*.in.yaml")
	var inputs [][]byte
	for _, f := range files {
		d, _ := os.ReadFile(f)
		inputs = append(inputs, d)
	}
	kinds := Kinds()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, in := range inputs {
			objs, err := kinds.Decode(in)
			if err != nil {
				b.Fatal(err)
			}
			for _, o := range objs {
				_ = Validate(o)
			}
		}
	}
}
