package node_test

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

var (
	nodeSeries      = flag.Int("node.series", 50_000, "series of BenchmarkNodeSeriesMemory (20 a turbine)")
	nodeSamples     = flag.Int("node.samples", 12, "samples per series of BenchmarkNodeSeriesMemory")
	nodeHeapProfile = flag.String("node.heapprofile", "", "write BenchmarkNodeSeriesMemory's heap profile, node running, to this file")
)

// BenchmarkNodeSeriesMemory is BenchmarkSeriesMemory (platform/ingest) on a
// whole node (role all: embedded Kafka, TSDB writer, streaming and PromQL
// rules with the shipped wind-farm rules, HTTP API): -node.series series
// of registered turbines (20 points each, demo org and site) are produced
// to gale.telemetry as the broker would (no MQTT connections, whose cost
// is issue 13 part 2's), every consumer reads them, and the benchmark
// reports the RSS and live heap the node added per series. The node sets
// the GC from its memory budget (memory.*) unless GOGC or GOMEMLIMIT are
// in the environment.
//
//	go test -run '^$' -bench NodeSeriesMemory -benchtime 1x -timeout 20m ./platform/node/ -args -node.series=200000
func BenchmarkNodeSeriesMemory(b *testing.B) {
	for range b.N {
		benchNodeSeriesMemory(b, *nodeSeries, *nodeSamples)
	}
}

func benchNodeSeriesMemory(b *testing.B, series, samplesPerSeries int) {
	points := []string{"WTUR.W", "WTUR.VAr", "WTUR.TurSt", "WTUR.DmdW", "WTUR.TotWh", "WROT.RotSpd",
		"WROT.PtAngValBl1", "WROT.PtAngValBl2", "WROT.PtAngValBl3", "WGEN.GnSpd", "WGEN.GnTmpSta",
		"WTRM.TrmTmpGbxOil", "WTRM.TrmTmpShfBrg1", "WNAC.WdSpd", "WNAC.WdDir", "WNAC.Dir", "WNAC.ExTmp",
		"WNAC.IceSt", "WCNV.Hz", "WCNV.GriPPV"}
	devices := series / len(points)
	cfg := nodetest.Config(b)
	cfg.SeedDemo = node.Demo{Turbines: 1} // the shipped products, the demo org and site
	h := nodetest.Start(b, cfg)

	// Register the turbines (4 at a time through the API).
	keys := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for d := range keys {
				h.CreateDevice(b, api.Device{ProductKey: "wind-turbine", DeviceKey: fmt.Sprintf("T%05d", d), Site: node.DemoSite})
			}
		})
	}
	t0 := time.Now()
	for d := range devices {
		keys <- d
	}
	close(keys)
	wg.Wait()
	b.Logf("registered %d turbines in %s", devices, time.Since(t0).Round(time.Millisecond))

	base := testkit.MemoryBaseline(b)
	start0 := h.Metric(b, "gale_ingest_samples_total")
	prod := bus.NewSyncProducer(h.Node.KafkaAddrs(), cfg.Kafka)
	defer prod.Close()
	ctx := context.Background()
	// Half an hour back, inside the TSDB head's in-order window (the newest sample less an hour): an hour
	// back sat on its edge, so once the node's self-monitoring had stored a sample of now, the first
	// rounds went to the out-of-order head, and a run took 30-40 s instead of 5 with half as much RSS again.
	start := time.Now().Add(-30 * time.Minute).Truncate(time.Second).UnixMilli()
	rec := api.Record{Kind: api.RecordPost, Org: node.DemoOrg, Site: node.DemoSite, Product: "wind-turbine", Samples: make([]api.Sample, len(points))}
	msgs := make([]bus.Message, 0, 500)
	t0 = time.Now()
	for round := range samplesPerSeries {
		ts := start + int64(round)*10_000
		for d := range devices {
			// Received now, as the broker stamps it; the samples are an hour old (a replay). A record
			// "received" an hour before it reached Kafka let the rules' wall clock call its turbine
			// silent whenever the rules consumer caught up with its partition: 36,000-80,000 false
			// turbine-silent alerts a run, whose events at times stalled the embedded Kafka for 10 s.
			rec.Device, rec.MessageID, rec.Received = fmt.Sprintf("T%05d", d), strconv.Itoa(round), time.Now().UnixMilli()
			for i, p := range points {
				rec.Samples[i] = api.Sample{Point: p, Time: ts, Value: float64(d%97) + float64(round)*0.25 + float64(i)}
			}
			msgs = append(msgs, bus.Message{Topic: api.TopicTelemetry, Key: []byte(rec.Product + "/" + rec.Device), Value: api.AppendRecord(nil, &rec)})
			if len(msgs) == cap(msgs) {
				require.NoError(b, prod.Produce(ctx, msgs...))
				msgs = msgs[:0]
			}
		}
	}
	if len(msgs) > 0 {
		require.NoError(b, prod.Produce(ctx, msgs...))
	}
	want := start0 + float64(series*samplesPerSeries)
	require.Eventually(b, func() bool { return h.Metric(b, "gale_ingest_samples_total") >= want }, 10*time.Minute, 100*time.Millisecond)
	elapsed := time.Since(t0)
	time.Sleep(5 * time.Second) // the rules consumer and a checkpoint catch up
	mem := testkit.ReportMemoryGrowth(b, base, series, "series", *nodeHeapProfile)
	gc := debug.SetGCPercent(-1) // reads it, and puts it back
	debug.SetGCPercent(gc)
	b.ReportMetric(float64(series*samplesPerSeries)/elapsed.Seconds(), "samples/s")
	b.Logf("%d series (%d turbines), %d samples each in %s: %s; GOGC %d, GOMEMLIMIT %s",
		series, devices, samplesPerSeries, elapsed.Round(time.Millisecond), mem, gc, config.ByteSize(debug.SetMemoryLimit(-1)))
}
