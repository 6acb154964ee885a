package loadgen

import (
	"math"
	"time"
)

// Schedule is one device's timetable: a per-device rate that rises linearly
// from zero to Rate over RampUp, holds for Steady, and falls linearly to zero
// over RampDown. Message k is due when the integral of the rate reaches k,
// so the timetable never depends on how fast earlier messages went out.
type Schedule struct {
	// Rate is the steady per-device rate, messages per second.
	Rate float64
	// RampUp, Steady and RampDown are the phases; Steady 0 with Unbounded
	// set holds the rate for ever (a message count ends the run instead).
	RampUp, Steady, RampDown time.Duration
	Unbounded                bool
}

// Span is the length of the timetable (0 when unbounded).
func (s Schedule) Span() time.Duration {
	if s.Unbounded {
		return 0
	}
	return s.RampUp + s.Steady + s.RampDown
}

// At returns when message k (0, 1, 2, ...) is due, as an offset from the
// start, and false once k is beyond the end of the timetable.
func (s Schedule) At(k int) (time.Duration, bool) {
	x := float64(k)
	r := s.Rate
	up, steady, down := s.RampUp.Seconds(), s.Steady.Seconds(), s.RampDown.Seconds()
	// Messages sent during the ramp-up: the area of a triangle.
	inUp := r * up / 2
	if x < inUp {
		return seconds(math.Sqrt(2 * up * x / r)), true
	}
	x -= inUp
	if s.Unbounded || x < r*steady {
		return seconds(up + x/r), true
	}
	x -= r * steady
	if x < r*down/2 {
		// Solve r·(τ − τ²/(2·down)) = x for the time τ into the ramp-down.
		tau := down * (1 - math.Sqrt(1-2*x/(r*down)))
		return seconds(up + steady + tau), true
	}
	return 0, false
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
