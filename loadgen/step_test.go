package loadgen

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStepSearchDecision runs the search's decisions over measured steps
// (no broker): each step is judged, the search stops at the first failure,
// and its result is the best passing step before that failure.
func TestStepSearchDecision(t *testing.T) {
	cfg := StepConfig{Factor: 1.25, MaxP99: 100 * time.Millisecond, MinRatio: 0.95}
	measured := []StepReport{
		{Offered: 4000, Achieved: 4001, PubackP99: 12},
		{Offered: 5000, Achieved: 4990, PubackP99: 35},
		{Offered: 6250, Achieved: 6200, PubackP99: 99.9},
		{Offered: 7812, Achieved: 7800, PubackP99: 100.1}, // over the p99 bound
		{Offered: 9765, Achieved: 9700, PubackP99: 20},    // never reached: the search stopped
	}
	var steps []StepReport
	for _, m := range measured {
		if !continueSearch(steps) {
			break
		}
		steps = append(steps, judgeStep(m, cfg, true))
	}
	require.Len(t, steps, 4)
	require.True(t, steps[2].Pass)
	require.False(t, steps[3].Pass)
	require.Contains(t, steps[3].Why, "PUBACK p99 100.1ms above 100ms")
	require.Equal(t, 6200.0, bestRate(steps))
	line := stepLine(4, steps[3], bestRate(steps))
	require.True(t, strings.HasPrefix(line, "step  4: offered    7812/s"), line)
	require.Contains(t, line, "FAIL (PUBACK p99")
	require.Contains(t, line, "best so far 6200/s")

	for _, c := range []struct {
		name string
		st   StepReport
		qos1 bool
		pass bool
		why  string
	}{
		{"below min ratio", StepReport{Offered: 10000, Achieved: 9400, PubackP99: 5}, true, false, "achieved 94.0% of offered, below 95%"},
		{"at min ratio", StepReport{Offered: 10000, Achieved: 9500, PubackP99: 5}, true, true, ""},
		{"errors", StepReport{Offered: 100, Achieved: 100, Errors: 2}, true, false, "2 errors"},
		{"QoS 0 has no PUBACK bound", StepReport{Offered: 100, Achieved: 100, PubackP99: 5000}, false, true, ""},
		{"a re-judged failure passes again", StepReport{Offered: 100, Achieved: 100, Pass: false, Why: "old"}, true, true, ""},
	} {
		got := judgeStep(c.st, cfg, c.qos1)
		require.Equal(t, c.pass, got.Pass, c.name)
		require.Equal(t, c.why, got.Why, c.name)
	}

	// No passing step: no rate; a lucky pass after a failure does not count.
	require.Zero(t, bestRate(nil))
	require.Zero(t, bestRate([]StepReport{{Achieved: 100}}))
	require.Equal(t, 50.0, bestRate([]StepReport{{Achieved: 50, Pass: true}, {Achieved: 80}, {Achieved: 120, Pass: true}}))
	require.True(t, continueSearch(nil))
}
