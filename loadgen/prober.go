package loadgen

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"
)

// prober measures publish-to-queryable latency. A few probe devices' Seq
// samples are stamped with their scheduled send time; the prober polls the
// query API for each probe device's newest stored timestamp, and since one
// device's samples are stored in order, every message of that device up to
// that timestamp is then queryable. Its latency runs from its scheduled
// time to the answer of the poll that first showed it, so it is an upper
// bound, at most one poll interval (plus the query) above the truth.
type prober struct {
	q        querier
	rec      *recorder
	expr     string
	interval time.Duration
	log      *slog.Logger

	mu     sync.Mutex
	byName map[string]int
	queues [][]probe // per probe device, in timestamp order
}

type probe struct {
	ts     int64 // Unix ms
	due    time.Time
	failed bool
}

func newProber(q querier, rec *recorder, ids []Identity, interval time.Duration, log *slog.Logger) *prober {
	p := &prober{
		q: q, rec: rec, interval: interval, log: log,
		expr:   "timestamp(" + deviceSelector(SeqPoint, ids) + ")",
		byName: map[string]int{}, queues: make([][]probe, len(ids)),
	}
	for i, id := range ids {
		p.byName[id.Name()] = i
	}
	return p
}

// expect registers probe device dev's message stamped ts, due at due.
func (p *prober) expect(dev int, ts int64, due time.Time) {
	p.mu.Lock()
	p.queues[dev] = append(p.queues[dev], probe{ts: ts, due: due})
	p.mu.Unlock()
}

// fail marks probe device dev's message ts as failed: it will never show.
func (p *prober) fail(dev int, ts int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.queues[dev] {
		if p.queues[dev][i].ts == ts {
			p.queues[dev][i].failed = true
			return
		}
	}
}

// outstanding counts the probes not seen yet (failed ones excluded).
func (p *prober) outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, q := range p.queues {
		for _, pr := range q {
			if !pr.failed {
				n++
			}
		}
	}
	return n
}

// run polls until ctx is cancelled.
func (p *prober) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		series, err := p.q.Vector(ctx, p.expr, time.Time{})
		if ctx.Err() != nil {
			return
		}
		seen := time.Now()
		if err != nil {
			p.rec.fail("probe_query", seen, false)
			p.log.Warn("end-to-end probe query failed", "err", err)
			continue
		}
		p.mu.Lock()
		for _, s := range series {
			i, ok := p.byName[string(s.Metric["product"]+"/"+s.Metric["device"])]
			if !ok {
				continue
			}
			newest := int64(math.Round(float64(s.Value) * 1000))
			q := p.queues[i]
			n := 0
			for n < len(q) && q[n].ts <= newest {
				if !q[n].failed {
					p.rec.e2e(q[n].due, seen)
				}
				n++
			}
			p.queues[i] = q[n:]
		}
		p.mu.Unlock()
	}
}
