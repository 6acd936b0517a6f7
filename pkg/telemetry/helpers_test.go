package telemetry_test

import (
	"context"
	"io"
	"testing"

	"github.com/ambitmesh/ambit/pkg/telemetry"
)

// noEnv keeps tests independent of OTEL_* variables of the machine.
func noEnv(string) (string, bool) { return "", false }

// setup builds a Telemetry that is shut down when the test ends.
func setup(t *testing.T, o telemetry.Options) *telemetry.Telemetry {
	t.Helper()
	if o.Component == "" {
		o.Component = "test"
	}
	if o.LookupEnv == nil {
		o.LookupEnv = noEnv
	}
	if o.LogOutput == nil {
		o.LogOutput = io.Discard
	}
	tel, err := telemetry.Setup(context.Background(), o)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tel
}
