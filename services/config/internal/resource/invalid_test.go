package resource

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInvalidCases runs each testdata/invalid/<case>.yaml through Decode and
// Validate. Every non-empty line of <case>.err is the expected start (or a
// distinctive part) of one error, in order; the case must fail with exactly
// that many errors, so a rule that fires twice or a stray extra error fails
// the test.
func TestInvalidCases(t *testing.T) {
	inputs, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no invalid cases: %v", err)
	}
	kinds := Kinds()
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			wantRaw, err := os.ReadFile(strings.TrimSuffix(in, ".yaml") + ".err")
			if err != nil {
				t.Fatalf("missing expectations: %v", err)
			}
			var want []string
			for _, line := range strings.Split(string(wantRaw), "\n") {
				if line = strings.TrimSpace(line); line != "" {
					want = append(want, line)
				}
			}

			_, err = kinds.DecodeAndValidate(data, DecodeOptions{}, ValidateOptions{})
			if err == nil {
				t.Fatalf("accepted; want errors:\n%s", strings.Join(want, "\n"))
			}
			got := FieldErrors(err)
			msgs := make([]string, len(got))
			for i, fe := range got {
				msgs[i] = fe.Error()
			}
			if len(got) != len(want) {
				t.Fatalf("got %d errors, want %d:\n got: %s\nwant: %s", len(got), len(want), strings.Join(msgs, "\n      "), strings.Join(want, "\n      "))
			}
			for i := range want {
				if !strings.Contains(msgs[i], want[i]) {
					t.Errorf("error %d:\n got: %s\nwant: %s", i, msgs[i], want[i])
				}
			}
			if !strings.Contains(err.Error(), "documents[") {
				t.Errorf("error does not name the document: %v", err)
			}
		})
	}
}
