package telemetry_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no exporter, batcher or reader goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
