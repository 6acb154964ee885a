package testkit

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// RunUntilEnd runs run in the background until the test ends; then it
// cancels run's context and requires that run returned no error.
func RunUntilEnd(tb testing.TB, run func(ctx context.Context) error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		require.NoError(tb, <-done)
	})
}
