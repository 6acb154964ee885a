package loadgen

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress writes a live status line: rewritten in place with \r on a
// terminal, one line per update otherwise (logs, CI).
type progress struct {
	w        io.Writer
	tty      bool
	interval time.Duration
	g        *Generator

	mu    sync.Mutex
	phase string
	start time.Time
}

func newProgress(w io.Writer, interval time.Duration, g *Generator) *progress {
	p := &progress{w: w, interval: interval, g: g, phase: "starting", start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// setPhase names what the run is doing now.
func (p *progress) setPhase(phase string) {
	p.mu.Lock()
	p.phase = phase
	p.mu.Unlock()
}

// run updates the line until ctx ends, then finishes it.
func (p *progress) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	var last [3]int64
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			if p.tty {
				fmt.Fprintln(p.w)
			}
			return
		case now := <-t.C:
			rec := p.g.rec
			cur := [3]int64{rec.offered.Load(), rec.sent.Load(), rec.acked.Load()}
			dt := now.Sub(lastAt).Seconds()
			rate := func(i int) float64 { return float64(cur[i]-last[i]) / dt }
			p.mu.Lock()
			phase := p.phase
			p.mu.Unlock()
			line := fmt.Sprintf("[%5.0fs] %-12s offered %7.0f/s  sent %7.0f/s  acked %7.0f/s  in-flight %5d  p99 puback %s  p99 e2e %s  errors %d",
				now.Sub(p.start).Seconds(), phase, rate(0), rate(1), rate(2), p.g.inflight.Load(),
				fmtMillis(rec.quantile(latPuback, 99)), fmtMillis(rec.quantile(latE2E, 99)), rec.errorCount())
			if p.tty {
				fmt.Fprint(p.w, "\r"+line+"\x1b[K")
			} else {
				fmt.Fprintln(p.w, line)
			}
			last, lastAt = cur, now
		}
	}
}

func fmtMillis(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}
