package run_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Members, servers and signal watchers must all be gone after each test;
// stuck members in the deadline test are released before it ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
