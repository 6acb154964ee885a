package device_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: a
// closed client or device leaves none behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
