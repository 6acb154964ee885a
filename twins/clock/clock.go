// Package clock is the twins' simulated clock: sim time that runs at real time
// or faster (×1…×10000), can be paused and stepped by hand, and drives timers
// and tickers in sim time.
package clock

import (
	"container/heap"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Speed limits accepted by New and SetSpeed.
const (
	MinSpeed = 1
	MaxSpeed = 10000
)

// ErrSpeed is returned for a speed outside MinSpeed…MaxSpeed.
var ErrSpeed = fmt.Errorf("clock speed must be between %d and %d", MinSpeed, MaxSpeed)

// errPeriod is returned for a non-positive ticker period.
var errPeriod = errors.New("ticker period must be positive")

// Clock is a simulated clock. Sim time advances with wall time multiplied by
// the speed while it runs, and only through Step while it is paused.
// Timers and tickers fire in sim time, in deadline order. A Clock is safe for
// concurrent use.
type Clock struct {
	mu      sync.Mutex
	sim     time.Time // sim time at the wall anchor
	wall    time.Time // wall anchor
	speed   float64
	paused  bool
	waiters waiterHeap
	seq     uint64
	timer   *time.Timer // wall timer for the earliest waiter while running
}

// New returns a running clock that starts at sim time start with the given speed.
func New(start time.Time, speed float64) (*Clock, error) {
	if speed < MinSpeed || speed > MaxSpeed {
		return nil, fmt.Errorf("%w: %g", ErrSpeed, speed)
	}
	return &Clock{sim: start, wall: time.Now(), speed: speed}, nil
}

// NewManual returns a paused clock at start (speed 1): sim time moves only
// through Step, which makes tests deterministic.
func NewManual(start time.Time) *Clock {
	return &Clock{sim: start, wall: time.Now(), speed: 1, paused: true}
}

// Now returns the current sim time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked(time.Now())
}

func (c *Clock) nowLocked(wall time.Time) time.Time {
	if c.paused {
		return c.sim
	}
	return c.sim.Add(time.Duration(float64(wall.Sub(c.wall)) * c.speed))
}

// rebase moves the anchor to the present so speed or pause changes apply from now on.
func (c *Clock) rebase() {
	w := time.Now()
	c.sim, c.wall = c.nowLocked(w), w
}

// Speed returns the speed factor (sim seconds per wall second).
func (c *Clock) Speed() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.speed
}

// SetSpeed changes the speed factor from now on.
func (c *Clock) SetSpeed(speed float64) error {
	if speed < MinSpeed || speed > MaxSpeed {
		return fmt.Errorf("%w: %g", ErrSpeed, speed)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rebase()
	c.speed = speed
	c.arm()
	return nil
}

// Paused reports whether the clock is paused.
func (c *Clock) Paused() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused
}

// Pause stops sim time; Step still advances it.
func (c *Clock) Pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rebase()
	c.paused = true
	c.arm()
}

// Resume lets sim time run again at the current speed.
func (c *Clock) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rebase()
	c.paused = false
	c.arm()
}

// Step advances sim time by d at once and fires, in deadline order, every
// timer and ticker that falls due.
func (c *Clock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rebase()
	c.sim = c.sim.Add(d)
	c.fire(c.sim)
	c.arm()
}

// fire delivers every waiter due at or before now. Tickers that missed
// several periods fire once, like time.Ticker dropping ticks for slow readers.
func (c *Clock) fire(now time.Time) {
	for len(c.waiters) > 0 && !c.waiters[0].at.After(now) {
		w := c.waiters[0]
		select {
		case w.c <- w.at:
		default:
		}
		if w.period <= 0 {
			heap.Pop(&c.waiters)
			continue
		}
		w.at = w.at.Add((now.Sub(w.at)/w.period + 1) * w.period)
		c.seq++
		w.seq = c.seq
		heap.Fix(&c.waiters, 0)
	}
}

// arm sets the wall timer for the earliest waiter, or stops it.
func (c *Clock) arm() {
	if c.paused || len(c.waiters) == 0 {
		if c.timer != nil {
			c.timer.Stop()
		}
		return
	}
	wait := time.Duration(float64(c.waiters[0].at.Sub(c.nowLocked(time.Now()))) / c.speed)
	if c.timer == nil {
		c.timer = time.AfterFunc(wait, c.onWall)
		return
	}
	c.timer.Reset(wait)
}

func (c *Clock) onWall() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paused {
		return
	}
	c.fire(c.nowLocked(time.Now()))
	c.arm()
}

func (c *Clock) add(d, period time.Duration) *waiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	w := &waiter{at: c.nowLocked(time.Now()).Add(d), period: period, seq: c.seq, c: make(chan time.Time, 1)}
	heap.Push(&c.waiters, w)
	c.fire(c.nowLocked(time.Now()))
	c.arm()
	return w
}

func (c *Clock) remove(w *waiter) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.index < 0 {
		return false
	}
	heap.Remove(&c.waiters, w.index)
	c.arm()
	return true
}

// Timer delivers the sim time of its deadline once on C.
type Timer struct {
	// C receives the deadline when the timer fires.
	C <-chan time.Time
	c *Clock
	w *waiter
}

// NewTimer returns a timer that fires after d of sim time.
func (c *Clock) NewTimer(d time.Duration) *Timer {
	w := c.add(d, 0)
	return &Timer{C: w.c, c: c, w: w}
}

// Stop prevents the timer from firing; it reports whether it was still pending.
func (t *Timer) Stop() bool { return t.c.remove(t.w) }

// Ticker delivers the sim time of each tick on C every period of sim time.
// Like time.Ticker it drops ticks for a slow reader.
type Ticker struct {
	// C receives the tick times.
	C <-chan time.Time
	c *Clock
	w *waiter
}

// NewTicker returns a ticker with the given period of sim time.
func (c *Clock) NewTicker(period time.Duration) (*Ticker, error) {
	if period <= 0 {
		return nil, errPeriod
	}
	w := c.add(period, period)
	return &Ticker{C: w.c, c: c, w: w}, nil
}

// Stop turns the ticker off.
func (t *Ticker) Stop() { t.c.remove(t.w) }

// Tick delivers tick times every d of sim time until stop is called; it lets
// components that take a clock (the edge gateway) run on sim time. d must be positive.
func (c *Clock) Tick(d time.Duration) (<-chan time.Time, func()) {
	w := c.add(d, d)
	return w.c, func() { c.remove(w) }
}

type waiter struct {
	at     time.Time
	period time.Duration
	seq    uint64
	index  int
	c      chan time.Time
}

// waiterHeap orders waiters by deadline, then by creation (seq).
type waiterHeap []*waiter

func (h waiterHeap) Len() int { return len(h) }
func (h waiterHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h waiterHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waiterHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiterHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*h = old[:len(old)-1]
	return w
}
