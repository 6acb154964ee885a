package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/registry"
)

// The node passes its registry as the AlertStore: the Service finds the
// gateway of a sub-device through it.
var _ deviceLookup = (*registry.Registry)(nil)

// nodata in event time, robust to lag (issue 13, part 4).

const silentRule = "rules:\n  - name: silent\n    type: nodata\n    point: T\n    after: 60s\n"

func silentRules(t testing.TB) []*Rule {
	rs, err := Parse("silent.yaml", []byte(silentRule))
	require.NoError(t, err)
	return rs
}

type gap struct{ from, to int64 } // a device's samples around a gap: prev, next

// TestNodataLagProperty feeds streams with random, growing lags (an edge
// replaying, a lagging partition) and random gaps, in arrival order, and
// checks the episodes are exactly the gaps longer than `after`: started at
// prev+after, resolved at next; never one that fires and resolves at once.
//
// The lag grows by at most a fifth of event time and no gap is within a
// fifth of `after` below it: a direct device whose edge slows down
// stretches its gaps in arrival time, and silence in arrival time is all
// there is to tell a device that is down (a 60 s gap that arrives as 70 s of
// silence fires; see docs).
func TestNodataLagProperty(t *testing.T) {
	const after, step = int64(60_000), int64(10_000)
	for seed := range uint64(30) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 13))
			type arr struct {
				s Sample
			}
			var stream []arr
			want := map[string]bool{}
			const arrivalEnd = int64(3_600_000)
			// 4 gateways of 5 sub-devices, and 6 direct devices; sources[i] < 4 are gateways.
			for src := range 10 {
				base := rng.Int64N(600_000)                                           // lag at t=0
				growth := rng.Float64() * 0.2                                         // the lag grows by up to a fifth of event time
				lag := func(t int64) int64 { return base + int64(float64(t)*growth) } // non-decreasing: in order
				devs, source := 1, ""
				if src < 4 {
					devs, source = 5, fmt.Sprintf("gw/g%d", src)
				}
				for d := range devs {
					name := fmt.Sprintf("d%d-%d", src, d)
					phase := rng.Int64N(step)
					var prev int64 = -1
					skipUntil := int64(-1)
					for t := phase; t+lag(t) <= arrivalEnd; t += step {
						if t < skipUntil {
							continue
						}
						// a gap of 1 to 30 steps, not at the end; never of 5 (a
						// silence of exactly `after`, stretched past it by the lag's growth)
						if end := t + 31*step; end+lag(end) < arrivalEnd && rng.IntN(40) == 0 {
							skip := int64(1 + rng.IntN(30))
							if skip == 5 {
								skip = 4
							}
							skipUntil = t + skip*step
							continue
						}
						if prev >= 0 && t-prev > after {
							want[fmt.Sprintf("q/%s %d %d", name, prev+after, t)] = true
						}
						prev = t
						stream = append(stream, arr{Sample{Org: "o", Product: "q", Device: name, Site: "s", Point: "T",
							Time: t, Value: 1, Source: source, Received: t + lag(t)}})
					}
				}
			}
			sort.SliceStable(stream, func(i, j int) bool { return stream[i].s.Received < stream[j].s.Received })
			e := NewEngine(silentRules(t), nil)
			fired := map[string]Transition{}
			got := map[string]bool{}
			check := func(ts []Transition) {
				for _, tr := range ts {
					k := tr.Key + fmt.Sprint(tr.StartedAt)
					switch tr.Kind {
					case Firing:
						require.NotContains(t, fired, k, "fired twice")
						fired[k] = tr
					case Resolved:
						f, ok := fired[k]
						require.True(t, ok, "resolved without firing: %+v", tr)
						require.Greater(t, tr.At, f.At, "fired and resolved at the same instant: %+v", tr)
						got[fmt.Sprintf("%s %d %d", tr.Key, tr.StartedAt, tr.At)] = true
						delete(fired, k)
					}
				}
			}
			for i, a := range stream {
				ts, _ := e.Observe(a.s)
				check(ts)
				if i%7 == 0 || i == len(stream)-1 { // batches
					check(e.Advance(0))
				}
			}
			require.Empty(t, fired, "episodes still firing though every stream is current")
			require.Equal(t, want, got)
		})
	}
}

// TestNodataLaggingDeviceNeverFires is the `gale up --speed 50` case: one
// gateway's sub-devices arrive minutes late, in order, without gaps, while
// a direct device is current. Nothing is silent.
func TestNodataLaggingDeviceNeverFires(t *testing.T) {
	e := NewEngine(silentRules(t), nil)
	var all []Transition
	for sec := int64(0); sec <= 1800; sec++ {
		now := testEpoch + sec*1000
		ts, _ := e.Observe(Sample{Product: "q", Device: "mast", Point: "T", Time: now, Received: now})
		all = append(all, ts...)
		// The gateway's lag grows from 0 to 15 minutes: it delivers 2 s of samples every 4 s.
		if sec%4 == 0 {
			for k := int64(0); k < 2; k++ {
				t := testEpoch + (sec/2+k)*1000
				for _, sub := range []string{"WT01", "WT02", "WT03"} {
					ts, _ := e.Observe(Sample{Product: "q", Device: sub, Point: "T", Time: t, Received: now, Source: "gw/GW01@0"})
					all = append(all, ts...)
				}
			}
		}
		all = append(all, e.Advance(now-30_000)...) // the node's wall clock, less the grace
	}
	require.Empty(t, all)
}

// TestNodataRealGapStartedAt: a real gap of a lagging sub-device fires
// with StartedAt = last sample + after, before its next sample arrives,
// once its gateway's stream ran past that.
func TestNodataRealGapStartedAt(t *testing.T) {
	e := NewEngine(silentRules(t), nil)
	const lag = 300_000
	var fired, resolved []Transition
	for sec := int64(0); sec <= 600; sec += 5 {
		t0 := testEpoch + sec*1000
		for _, sub := range []string{"WT01", "WT02"} {
			if sub == "WT01" && sec > 100 && sec < 400 {
				continue // WT01 silent from 100 s to 400 s of event time
			}
			ts, _ := e.Observe(Sample{Product: "q", Device: sub, Point: "T", Time: t0, Received: t0 + lag, Source: "gw/GW01@0"})
			ts = append(ts, e.Advance(t0+lag-30_000)...)
			for _, tr := range ts {
				switch tr.Kind {
				case Firing:
					fired = append(fired, tr)
					// Noticed from the gateway's stream, before WT01's next sample (at 400 s).
					require.Less(t, t0, testEpoch+400_000)
				case Resolved:
					resolved = append(resolved, tr)
				}
			}
		}
	}
	require.Len(t, fired, 1)
	require.Equal(t, "q/WT01", fired[0].Key)
	require.Equal(t, testEpoch+160_000, fired[0].StartedAt)
	require.Equal(t, testEpoch+160_000, fired[0].At)
	require.Len(t, resolved, 1)
	require.Equal(t, testEpoch+400_000, resolved[0].At)
}

// TestNodataSilentGatewayFiresOnWallClock: a whole gateway down, and every
// device silent, still fire on the wall clock: an outage is never missed.
func TestNodataSilentGatewayFiresOnWallClock(t *testing.T) {
	e := NewEngine(silentRules(t), nil)
	for sec := int64(0); sec <= 30; sec += 10 {
		now := testEpoch + sec*1000
		for _, sub := range []string{"WT01", "WT02"} {
			e.Observe(Sample{Product: "q", Device: sub, Point: "T", Time: now, Received: now, Source: "gw/GW01@0", Lane: "0"})
		}
	}
	require.Empty(t, e.Advance(testEpoch+90_000), "not yet: 60 s after the last arrival")
	ts := e.Advance(testEpoch + 91_000)
	require.Len(t, ts, 2)
	for _, tr := range ts {
		require.Equal(t, Firing, tr.Kind)
		require.Equal(t, testEpoch+90_000, tr.StartedAt)
	}
	// A lane the consumer knows to be behind is not moved by the wall clock.
	e2 := NewEngine(silentRules(t), nil)
	e2.Observe(Sample{Product: "q", Device: "WT01", Point: "T", Time: testEpoch, Received: testEpoch, Source: "gw/GW01@1", Lane: "1"})
	e2.SetLaneBehind("1", true)
	require.Empty(t, e2.Advance(testEpoch+3_600_000))
	e2.SetLaneBehind("1", false)
	require.Len(t, e2.Advance(testEpoch+3_600_000), 1)
}

// TestNodataSnapshot: sources and lanes survive a snapshot, and a snapshot
// from before them (no sources) restores into working state.
func TestNodataSnapshot(t *testing.T) {
	rules := silentRules(t)
	e := NewEngine(rules, nil)
	e.Observe(Sample{Product: "q", Device: "WT01", Point: "T", Time: testEpoch, Received: testEpoch + 300_000, Source: "gw/GW01@0", Lane: "0"})
	e.Observe(Sample{Product: "q", Device: "WT02", Point: "T", Time: testEpoch + 100_000, Received: testEpoch + 300_000, Source: "gw/GW01@0", Lane: "0"})
	e.SetLaneBehind("0", true)
	snap, err := e.Snapshot()
	require.NoError(t, err)
	r := NewEngine(rules, nil)
	require.NoError(t, r.Restore(snap))
	again, err := r.Snapshot()
	require.NoError(t, err)
	require.JSONEq(t, string(snap), string(again))
	// WT01 is 100 s behind its gateway's stream: silent since 60 s.
	ts := r.Advance(0)
	require.Len(t, ts, 1)
	require.Equal(t, testEpoch+60_000, ts[0].StartedAt)
	require.Equal(t, "q/WT01", ts[0].Key)

	// The format of before issue 13 part 4.
	old := fmt.Sprintf(`{"watermark":%d,"latest":{"q/WT01":{"T":{"t":%d,"v":1}},"q/WT02":{"T":{"t":%d,"v":1}}},`+
		`"rules":{"silent":{"q/WT01":{"last":%d,"device":"q/WT01"},"q/WT02":{"firing":true,"since":%d,"last":%d,"device":"q/WT02"}}},"groups":{}}`,
		testEpoch+100_000, testEpoch+100_000, testEpoch, testEpoch+100_000, testEpoch+60_000, testEpoch)
	o := NewEngine(rules, nil)
	require.NoError(t, o.Restore([]byte(old)))
	require.Empty(t, o.Advance(testEpoch+150_000))
	ts = o.Advance(testEpoch + 161_000)
	require.Len(t, ts, 1)
	require.Equal(t, "q/WT01", ts[0].Key)
	require.Equal(t, testEpoch+160_000, ts[0].StartedAt)
	// The episode WT02 had firing ends on its next sample, after it began.
	ts, _ = o.Observe(Sample{Product: "q", Device: "WT02", Point: "T", Time: testEpoch + 162_000, Received: testEpoch + 162_000, Source: "gw/GW01@0", Lane: "0"})
	require.Len(t, ts, 1)
	require.Equal(t, Resolved, ts[0].Kind)
	require.Equal(t, testEpoch+60_000, ts[0].StartedAt)
	require.Equal(t, testEpoch+162_000, ts[0].At)
	b, err := o.Snapshot()
	require.NoError(t, err)
	var s snapshot
	require.NoError(t, json.Unmarshal(b, &s))
	require.Equal(t, "gw/GW01@0", s.DeviceSources["q/WT02"])
}

// nodataStore is an AlertStore and device registry in memory that keeps every transition.
type nodataStore struct {
	mu       sync.Mutex
	fired    []api.Alert
	resolved [][2]int64 // startedAt, resolvedAt
	state    []byte
	gateways map[string]string
}

func (m *nodataStore) FireAlert(_ context.Context, a api.Alert) (api.Alert, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fired = append(m.fired, a)
	return a, true, nil
}

func (m *nodataStore) ResolveAlert(_ context.Context, rule, key string, startedAt, resolvedAt int64, _ float64) (api.Alert, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resolved = append(m.resolved, [2]int64{startedAt, resolvedAt})
	return api.Alert{Rule: rule, Key: key, StartedAt: startedAt}, true, nil
}

func (m *nodataStore) SaveRuleState(_ context.Context, _ string, b []byte) error {
	m.state = append([]byte(nil), b...)
	return nil
}
func (m *nodataStore) RuleState(context.Context, string) ([]byte, error) { return m.state, nil }

func (m *nodataStore) Device(pk, dk string) (api.Device, bool) {
	gw, ok := m.gateways[pk+"/"+dk]
	d := api.Device{ProductKey: pk, DeviceKey: dk}
	if ok {
		d.GatewayProductKey, d.GatewayDeviceKey = "gw", gw
	}
	return d, true
}

func telemetry(t testing.TB, partition int, offset, hwm int64, dev string, received int64, times ...int64) bus.Message {
	rec := api.Record{Kind: api.RecordPost, Org: "o", Product: "q", Device: dev, Site: "s", Received: received}
	for _, tm := range times {
		rec.Samples = append(rec.Samples, api.Sample{Point: "T", Time: tm, Value: 1})
	}
	return bus.Message{Topic: api.TopicTelemetry, Partition: partition, Offset: offset, HighWaterMark: hwm, Value: api.AppendRecord(nil, &rec)}
}

// TestServiceNodataPartitionLag: the wall clock moves only partitions the
// consumer has read to its end, so a lagging partition's devices do not
// fire while a gateway down on a current one does; after a restart every
// partition counts as behind until read to its end, or the consumer is idle.
func TestServiceNodataPartitionLag(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"silent.yaml": silentRule})
	store := &nodataStore{gateways: map[string]string{"q/WT01": "GW01", "q/WT02": "GW01"}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := NewService(ctx, dir, nil, store, nil, log, prometheus.NewRegistry())
	require.NoError(t, err)
	w := testEpoch
	require.NoError(t, s.Handle(ctx, []bus.Message{
		telemetry(t, 0, 10, 12, "WT01", w, w),
		telemetry(t, 0, 11, 12, "WT02", w, w),  // partition 0 read to its end
		telemetry(t, 1, 50, 900, "WT09", w, w), // partition 1: 849 records unread
	}))
	require.NoError(t, s.AdvanceTo(ctx, time.UnixMilli(w+200_000)))
	require.Len(t, store.fired, 2, "the gateway of partition 0 is down")
	for _, a := range store.fired {
		require.NotEqual(t, "q/WT09", a.Key)
		require.Equal(t, w+60_000, a.StartedAt)
	}
	// WT09's backlog: no gap, nothing fires.
	var backlog []bus.Message
	for i := int64(1); i <= 20; i++ {
		backlog = append(backlog, telemetry(t, 1, 50+i, 71, "WT09", w+190_000, w+i*10_000))
	}
	require.NoError(t, s.Handle(ctx, backlog))
	require.Len(t, store.fired, 2)
	require.NoError(t, s.Checkpoint(ctx))

	// A restart: partition 1 is behind until the consumer shows otherwise.
	r, err := NewService(ctx, dir, nil, store, nil, log, prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, r.AdvanceTo(ctx, time.UnixMilli(w+3_600_000)))
	require.Len(t, store.fired, 2)
	r.idleAfter = 0 // the consumer has nothing more to read
	require.NoError(t, r.AdvanceTo(ctx, time.UnixMilli(w+3_600_000)))
	require.Len(t, store.fired, 3)
	require.Equal(t, "q/WT09", store.fired[2].Key)
	require.Equal(t, w+260_000, store.fired[2].StartedAt)
	for _, rs := range store.resolved {
		require.Greater(t, rs[1], rs[0])
	}
}
