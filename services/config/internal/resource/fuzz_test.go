package resource

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeValidate feeds arbitrary bytes to Decode and Validate. Neither
// may panic, and every object that decodes and validates must survive a
// round trip through its stored form unchanged and still be valid. The seed
// corpus is every testdata manifest plus the entries in
// testdata/fuzz/FuzzDecodeValidate.
func FuzzDecodeValidate(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*.in.yaml", "testdata/invalid/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	kinds := Kinds()
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := kinds.Decode(data)
		if err != nil {
			_ = err.Error() // rendering the error must not panic either
			return
		}
		for _, o := range objs {
			if errs := (ValidateOptions{}).validate(o); len(errs) > 0 {
				_ = errs.Error()
				continue
			}
			stored, err := o.MarshalJSON()
			if err != nil {
				t.Fatalf("valid %s does not marshal: %v", o.Kind, err)
			}
			back, err := kinds.DecodeOne(stored)
			if err != nil {
				t.Fatalf("stored form of a valid %s does not decode: %v\n%s", o.Kind, err, stored)
			}
			again, err := back.MarshalJSON()
			if err != nil {
				t.Fatalf("re-decoded %s does not marshal: %v", o.Kind, err)
			}
			if !bytes.Equal(stored, again) {
				t.Fatalf("stored form changed on a round trip:\n%s\n%s", stored, again)
			}
			if !o.SpecEqual(back) {
				t.Fatalf("spec changed on a round trip:\n%s", stored)
			}
			if errs := (ValidateOptions{}).validate(back); len(errs) > 0 {
				t.Fatalf("re-decoded %s is invalid: %v\n%s", o.Kind, errs, stored)
			}
		}
	})
}
