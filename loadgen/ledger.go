package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/common/model"
)

// querier runs PromQL instant queries (apiclient.Prometheus does, over HTTP).
type querier interface {
	Vector(ctx context.Context, expr string, at time.Time) (model.Vector, error)
	Matrix(ctx context.Context, expr string, at time.Time) (model.Matrix, error)
}

// Message states in the ledger (bit flags: a reply may arrive before the PUBACK).
const (
	flagAcked    uint8 = 1 << iota // PUBACKed (QoS 1) or written (QoS 0)
	flagRejected                   // answered with an error reply code
)

// ledger remembers every message each device sent — its timestamp, and
// whether it was acknowledged or rejected — and afterwards checks through
// the query API that every acknowledged sample is stored with its value.
type ledger struct {
	base int64 // Unix ms; timestamps are kept as offsets from it
	devs []devLedger
}

type devLedger struct {
	mu    sync.Mutex
	ts    []int32 // seq-1 → timestamp − base
	state []uint8
}

func newLedger(devices int, base time.Time) *ledger {
	return &ledger{base: base.UnixMilli(), devs: make([]devLedger, devices)}
}

// add records that device dev sends message seq (1, 2, ...) stamped ts (Unix ms).
func (l *ledger) add(dev int, seq, ts int64) {
	d := &l.devs[dev]
	d.mu.Lock()
	for int64(len(d.ts)) < seq {
		d.ts, d.state = append(d.ts, 0), append(d.state, 0)
	}
	d.ts[seq-1] = int32(ts - l.base)
	d.mu.Unlock()
}

// mark sets flag on device dev's message seq.
func (l *ledger) mark(dev int, seq int64, flag uint8) {
	d := &l.devs[dev]
	d.mu.Lock()
	if seq >= 1 && seq <= int64(len(d.state)) {
		d.state[seq-1] |= flag
	}
	d.mu.Unlock()
}

// LedgerReport is the outcome of the loss check.
type LedgerReport struct {
	// Checked is false when the check did not run (plain mode, disabled, interrupted).
	Checked bool `json:"checked"`
	// Error is why the check could not finish.
	Error string `json:"error,omitempty"`
	// Acknowledged messages (PUBACKed, or written at QoS 0).
	Acknowledged int64 `json:"acknowledged"`
	// Rejected were acknowledged but answered with an error reply code (with --replies).
	Rejected int64 `json:"rejected"`
	// Stored acknowledged samples found at their timestamp with their value.
	Stored int64 `json:"stored"`
	// Missing acknowledged samples were not stored (not queryable when the check gave up): the loss.
	Missing int64 `json:"missing"`
	// WrongValue samples stored at an acknowledged message's timestamp with another value.
	WrongValue int64 `json:"wrong_value"`
	// Duplicates are sequence numbers stored at a timestamp other than their own.
	Duplicates int64 `json:"duplicates"`
	// UnackedStored were stored though never acknowledged (e.g. a PUBACK that timed out).
	UnackedStored int64 `json:"unacked_stored"`
	// SettleSeconds is how long the check waited for the last samples.
	SettleSeconds float64 `json:"settle_s"`
	// Devices lists the devices with missing, wrong or duplicated samples.
	Devices []DeviceLoss `json:"devices,omitempty"`
}

// Lost is the number of acknowledged samples not stored with their value.
func (r LedgerReport) Lost() int64 { return r.Missing + r.WrongValue }

// DeviceLoss lists one device's faulty sequence numbers (each list capped at maxListed).
type DeviceLoss struct {
	Device     string  `json:"device"`
	Missing    int64   `json:"missing"`
	WrongValue int64   `json:"wrong_value"`
	Duplicates int64   `json:"duplicates"`
	MissingSeq []int64 `json:"missing_seq,omitempty"`
	WrongSeq   []int64 `json:"wrong_seq,omitempty"`
	DupSeq     []int64 `json:"duplicate_seq,omitempty"`
}

const (
	maxListed       = 1000
	maxQuerySamples = 50_000
	maxGroup        = 100
)

// devCheck is one device's outcome.
type devCheck struct {
	acked, rejected, stored, unackedStored int64
	loss                                   DeviceLoss
}

// check compares the ledger with the TSDB, rechecking devices with missing
// samples until none are missing or settle has passed without any of them
// showing up (a pipeline that is behind but catching up is waited for).
func (l *ledger) check(ctx context.Context, q querier, ids []Identity, settle time.Duration, log *slog.Logger) LedgerReport {
	start := time.Now()
	deadline := start.Add(settle)
	lastMissing := int64(-1)
	rep := LedgerReport{Checked: true}
	results := make([]devCheck, len(ids))
	pending := make([]int, 0, len(ids))
	for i := range ids {
		pending = append(pending, i)
	}
	for {
		if err := l.checkDevices(ctx, q, ids, pending, results); err != nil {
			rep.Checked, rep.Error = false, err.Error()
			return rep
		}
		pending = pending[:0]
		var missing int64
		for i, r := range results {
			if r.loss.Missing > 0 {
				pending = append(pending, i)
				missing += r.loss.Missing
			}
		}
		if lastMissing >= 0 && missing < lastMissing {
			deadline = time.Now().Add(settle)
		}
		lastMissing = missing
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		log.Info("loss ledger: acknowledged samples not queryable yet; waiting", "samples", missing, "devices", len(pending))
		select {
		case <-ctx.Done():
			rep.Checked, rep.Error = false, ctx.Err().Error()
			return rep
		case <-time.After(time.Second):
		}
	}
	rep.SettleSeconds = time.Since(start).Seconds()
	for _, r := range results {
		rep.Acknowledged += r.acked
		rep.Rejected += r.rejected
		rep.Stored += r.stored
		rep.UnackedStored += r.unackedStored
		rep.Missing += r.loss.Missing
		rep.WrongValue += r.loss.WrongValue
		rep.Duplicates += r.loss.Duplicates
		if r.loss.Missing+r.loss.WrongValue+r.loss.Duplicates > 0 {
			rep.Devices = append(rep.Devices, r.loss)
		}
	}
	return rep
}

// checkDevices fetches the Seq samples of devices idx in groups and time
// chunks of at most maxQuerySamples, and evaluates each device.
func (l *ledger) checkDevices(ctx context.Context, q querier, ids []Identity, idx []int, results []devCheck) error {
	for len(idx) > 0 {
		n, samples := 0, 0
		for n < len(idx) && n < maxGroup {
			c := l.count(idx[n])
			if n > 0 && samples+c > maxQuerySamples {
				break
			}
			samples += c
			n++
		}
		group := idx[:n]
		idx = idx[n:]
		from, to := int64(1<<62), int64(-1<<62)
		groupIDs := make([]Identity, 0, len(group))
		byName := map[string]int{}
		for _, i := range group {
			if lo, hi, ok := l.span(i); ok {
				from, to = min(from, lo), max(to, hi)
			}
			groupIDs = append(groupIDs, ids[i])
			byName[ids[i].Name()] = i
		}
		if from > to {
			for _, i := range group {
				results[i] = devCheck{loss: DeviceLoss{Device: ids[i].Name()}}
			}
			continue
		}
		stored := make(map[int]map[int64]float64, len(group))
		chunks := int64(max(1, (samples+maxQuerySamples-1)/maxQuerySamples))
		width := (to - from + chunks) / chunks
		sel := deviceSelector(SeqPoint, groupIDs)
		for a := from; a <= to; a += width {
			b := min(a+width-1, to)
			// A range selector at time b covers (b−range, b].
			expr := fmt.Sprintf("%s[%dms]", sel, b-a+1)
			series, err := q.Matrix(ctx, expr, time.UnixMilli(b))
			if err != nil {
				return fmt.Errorf("loss ledger: %w", err)
			}
			for _, s := range series {
				i, ok := byName[string(s.Metric["product"]+"/"+s.Metric["device"])]
				if !ok {
					continue
				}
				if stored[i] == nil {
					stored[i] = map[int64]float64{}
				}
				for _, v := range s.Values {
					stored[i][int64(v.Timestamp)] = float64(v.Value)
				}
			}
		}
		for _, i := range group {
			results[i] = l.evaluate(i, ids[i].Name(), stored[i])
		}
	}
	return nil
}

// count is how many messages device i sent.
func (l *ledger) count(i int) int {
	d := &l.devs[i]
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.ts)
}

// span is the Unix ms range of device i's messages.
func (l *ledger) span(i int) (int64, int64, bool) {
	d := &l.devs[i]
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ts) == 0 {
		return 0, 0, false
	}
	// Timestamps of one device increase with seq.
	return l.base + int64(d.ts[0]), l.base + int64(d.ts[len(d.ts)-1]), true
}

// evaluate compares device i's messages with its stored samples (timestamp → value).
func (l *ledger) evaluate(i int, name string, stored map[int64]float64) devCheck {
	d := &l.devs[i]
	d.mu.Lock()
	defer d.mu.Unlock()
	c := devCheck{loss: DeviceLoss{Device: name}}
	listed := func(list []int64, seq int64) []int64 {
		if len(list) < maxListed {
			list = append(list, seq)
		}
		return list
	}
	for k, off := range d.ts {
		seq, ts := int64(k+1), l.base+int64(off)
		v, ok := stored[ts]
		acked, rejected := d.state[k]&flagAcked != 0, d.state[k]&flagRejected != 0
		switch {
		case !acked:
			if ok && v == float64(seq) {
				c.unackedStored++
			}
			continue
		case rejected:
			c.acked++
			c.rejected++
			continue
		}
		c.acked++
		switch {
		case !ok:
			c.loss.Missing++
			c.loss.MissingSeq = listed(c.loss.MissingSeq, seq)
		case v != float64(seq):
			c.loss.WrongValue++
			c.loss.WrongSeq = listed(c.loss.WrongSeq, seq)
		default:
			c.stored++
		}
	}
	for ts, v := range stored {
		seq := int64(v)
		if float64(seq) == v && seq >= 1 && seq <= int64(len(d.ts)) && l.base+int64(d.ts[seq-1]) != ts {
			c.loss.Duplicates++
			c.loss.DupSeq = listed(c.loss.DupSeq, seq)
		}
	}
	slices.Sort(c.loss.DupSeq)
	return c
}
