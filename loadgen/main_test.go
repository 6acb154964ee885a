package loadgen

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: every
// device's sender and collector, the prober and the progress line end with the run.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
