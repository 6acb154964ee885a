package clock

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestManualStepFiresInOrder(t *testing.T) {
	c := NewManual(t0)
	require.True(t, c.Paused())
	a := c.NewTimer(10 * time.Second)
	b := c.NewTimer(5 * time.Second)
	stopped := c.NewTimer(7 * time.Second)
	require.True(t, stopped.Stop())
	require.False(t, stopped.Stop())

	c.Step(4 * time.Second)
	require.Empty(t, b.C)
	c.Step(time.Second)
	require.Equal(t, t0.Add(5*time.Second), <-b.C)
	require.Empty(t, a.C)
	c.Step(time.Hour)
	require.Equal(t, t0.Add(10*time.Second), <-a.C)
	require.Empty(t, stopped.C)
	require.False(t, a.Stop(), "a fired timer is not pending")
	require.Equal(t, t0.Add(time.Hour+5*time.Second), c.Now())
}

func TestTicker(t *testing.T) {
	tests := []struct {
		name  string
		steps []time.Duration
		ticks []time.Duration // expected tick times read after each step (0 = none)
	}{
		{"each period", []time.Duration{time.Second, time.Second, time.Second}, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}},
		{"half periods", []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}, []time.Duration{0, time.Second}},
		{"missed ticks dropped", []time.Duration{10 * time.Second, time.Second}, []time.Duration{time.Second, 11 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewManual(t0)
			tk, err := c.NewTicker(time.Second)
			require.NoError(t, err)
			defer tk.Stop()
			for i, d := range tt.steps {
				c.Step(d)
				if tt.ticks[i] == 0 {
					require.Empty(t, tk.C)
					continue
				}
				require.Equal(t, t0.Add(tt.ticks[i]), <-tk.C)
			}
		})
	}
	_, err := NewManual(t0).NewTicker(0)
	require.Error(t, err)
}

func TestRunningClockAccelerates(t *testing.T) {
	c, err := New(t0, MaxSpeed)
	require.NoError(t, err)
	require.False(t, c.Paused())
	tm := c.NewTimer(30 * time.Minute) // 0.18 s of wall time at ×10000
	require.Eventually(t, func() bool { return len(tm.C) > 0 }, 10*time.Second, time.Millisecond)
	at := <-tm.C
	require.False(t, at.Before(t0.Add(30*time.Minute)))
	require.False(t, c.Now().Before(at), "a timer never fires early")
	tk, err := c.NewTicker(time.Minute)
	require.NoError(t, err)
	defer tk.Stop()
	require.Eventually(t, func() bool { return len(tk.C) > 0 }, 5*time.Second, time.Millisecond)
}

func TestSpeedPauseResume(t *testing.T) {
	c, err := New(t0, 1)
	require.NoError(t, err)
	require.ErrorIs(t, c.SetSpeed(0.5), ErrSpeed)
	require.ErrorIs(t, c.SetSpeed(10001), ErrSpeed)
	_, err = New(t0, 0)
	require.ErrorIs(t, err, ErrSpeed)

	require.NoError(t, c.SetSpeed(100))
	require.Equal(t, 100.0, c.Speed())
	c.Pause()
	frozen := c.Now()
	require.Equal(t, frozen, c.Now())
	c.Step(time.Minute)
	require.Equal(t, frozen.Add(time.Minute), c.Now())
	c.Resume()
	require.Eventually(t, func() bool { return c.Now().After(frozen.Add(time.Minute + time.Second)) }, 5*time.Second, time.Millisecond)
}

func TestConcurrentUse(t *testing.T) {
	c, err := New(t0, 1000)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				switch (i + j) % 5 {
				case 0:
					_ = c.Now()
				case 1:
					require.NoError(t, c.SetSpeed(float64(1+j)))
				case 2:
					c.Step(time.Millisecond)
				case 3:
					c.NewTimer(time.Duration(j) * time.Millisecond).Stop()
				case 4:
					tk, err := c.NewTicker(time.Millisecond)
					require.NoError(t, err)
					tk.Stop()
				}
			}
		})
	}
	wg.Wait()
	require.True(t, c.Now().After(t0))
}
