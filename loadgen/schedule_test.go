package loadgen

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScheduleAt(t *testing.T) {
	count := func(s Schedule) (int, time.Duration) {
		n, last := 0, time.Duration(-1)
		for ; ; n++ {
			at, ok := s.At(n)
			if !ok || n > 1_000_000 {
				return n, last
			}
			require.Greater(t, at, last, "message %d is not after message %d", n, n-1)
			last = at
		}
	}
	for _, c := range []struct {
		name     string
		s        Schedule
		messages int
		lastMax  time.Duration
	}{
		{"steady 20/s for 3s", Schedule{Rate: 20, Steady: 3 * time.Second}, 60, 3 * time.Second},
		{"ramp up 2s, steady 2s", Schedule{Rate: 10, RampUp: 2 * time.Second, Steady: 2 * time.Second}, 30, 4 * time.Second},
		{"steady 1s, ramp down 2s", Schedule{Rate: 10, Steady: time.Second, RampDown: 2 * time.Second}, 20, 3 * time.Second},
		{"all three", Schedule{Rate: 100, RampUp: time.Second, Steady: time.Second, RampDown: time.Second}, 200, 3 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, last := count(c.s)
			require.Equal(t, c.messages, n)
			require.Less(t, last, c.lastMax)
			require.Equal(t, c.lastMax, c.s.Span())
		})
	}

	s := Schedule{Rate: 10, RampUp: 10 * time.Second, Steady: 10 * time.Second}
	// In a linear ramp the rate at time t is Rate·t/RampUp: the gap between
	// messages shrinks towards 1/Rate.
	a, _ := s.At(5)
	b, _ := s.At(6)
	c, _ := s.At(49)
	d, _ := s.At(50) // the first of the steady phase
	require.Greater(t, b-a, d-c)
	require.InDelta(t, 100*time.Millisecond, d-c, float64(2*time.Millisecond))

	u := Schedule{Rate: 5, Unbounded: true}
	at, ok := u.At(1_000_000)
	require.True(t, ok)
	require.Equal(t, 200_000*time.Second, at)
}
