// Package demo is the scripted tour behind `make demo`: each step states a
// claim, does the real thing, and prints the evidence or why the claim did
// not hold. The tour exits non-zero if any claim failed.
//
// The tour shows only what exists. Components that are not built yet are
// listed as such; nothing is simulated.
package demo

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Step is one claim of the tour.
type Step struct {
	Claim string
	// Run does the work and returns the evidence to print.
	Run func(ctx context.Context) (evidence []string, err error)
}

// Tour runs steps in order and reports each. A failed step does not stop the
// tour unless stopOnFailure is set; later steps may depend on earlier ones,
// so they should fail cleanly on their own.
type Tour struct {
	Out   io.Writer
	Steps []Step
}

// Run executes the tour and returns the number of failed claims.
func (t *Tour) Run(ctx context.Context) int {
	failed := 0
	for i, s := range t.Steps {
		fmt.Fprintf(t.Out, "\n[%d/%d] %s\n", i+1, len(t.Steps), s.Claim)
		start := time.Now()
		evidence, err := s.Run(ctx)
		for _, e := range evidence {
			fmt.Fprintf(t.Out, "      %s\n", e)
		}
		if err != nil {
			failed++
			fmt.Fprintf(t.Out, "  ✗ did not hold: %v\n", err)
			continue
		}
		fmt.Fprintf(t.Out, "  ✓ held (%s)\n", time.Since(start).Round(time.Millisecond))
	}
	return failed
}
