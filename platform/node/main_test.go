package node

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: a node
// stopped or closed leaves none behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
