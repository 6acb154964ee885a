package ingest_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/tsdb/tsdbtest"
	"github.com/gale-iot/gale/twins/turbine"
)

// turbinePoints are the 20 points a turbine publishes.
var turbinePoints = []string{
	turbine.PointW, turbine.PointVAr, turbine.PointTurSt, turbine.PointDmdW, turbine.PointTotWh,
	turbine.PointRotSpd, turbine.PointPtAngBl1, turbine.PointPtAngBl2, turbine.PointPtAngBl3,
	turbine.PointGnSpd, turbine.PointGnTmpSta, turbine.PointGbxOil, turbine.PointShfBrg1,
	turbine.PointWdSpd, turbine.PointWdDir, turbine.PointNacDir, turbine.PointExTmp,
	turbine.PointIceSt, turbine.PointHz, turbine.PointGriPPV,
}

var seriesSamples = flag.Int("series.samples", 12, "samples per series of BenchmarkSeriesMemory (a head chunk holds 120)")

var heapProfile = flag.String("series.heapprofile", "", "write a heap profile of BenchmarkSeriesMemory, taken with the TSDB still open, to this file")

// BenchmarkSeriesMemory ingests N distinct series (N/20 turbines of 20
// points, 100 turbines a site) through the real path, Kafka messages into
// ingest.Writer into the TSDB, samplesPerSeries samples each, and reports
// the process's RSS and the live heap (after a GC) it added per series.
// Each size frees what the previous one left first (debug.FreeOSMemory), but
// run one size per process for clean RSS figures:
//
//	go test -run '^$' -bench 'SeriesMemory/series=200000$' -benchtime 1x ./platform/ingest/
//
// -args -series.heapprofile FILE writes a heap profile with the TSDB open
// (go tool pprof -sample_index=inuse_space); -args -series.samples N sends
// N samples per series (default 12), longer than the series' creation, so
// that the GC's steady state (garbage up to GOGC % of the live heap, or the
// limit) shows in the RSS.
//
// The GC runs as the environment says (GOGC, GOMEMLIMIT): a test binary does
// not apply the node's memory budget, so pass the budget's GOMEMLIMIT to see
// what a node would hold.
func BenchmarkSeriesMemory(b *testing.B) {
	for _, n := range []int{50_000, 200_000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			for range b.N {
				benchSeriesMemory(b, n, *seriesSamples)
			}
		})
	}
}

func benchSeriesMemory(b *testing.B, series, samplesPerSeries int) {
	base := testkit.MemoryBaseline(b)
	db := tsdbtest.Open(b)
	latest := ingest.NewLatest()
	w := ingest.NewWriter(db, latest, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	devices := series / len(turbinePoints)
	start := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	const batchSize = 100 // records per consumer batch
	batch := make([]bus.Message, 0, batchSize)
	var buf []byte
	ctx := context.Background()
	flush := func() {
		require.NoError(b, w.Handle(ctx, batch))
		batch = batch[:0]
	}
	t0 := time.Now()
	rec := api.Record{Kind: api.RecordPost, Org: "demo", Product: "wind-turbine", Samples: make([]api.Sample, len(turbinePoints))}
	for round := range samplesPerSeries {
		ts := start + int64(round)*10_000
		for d := range devices {
			rec.Device, rec.Site = fmt.Sprintf("WT%05d", d), fmt.Sprintf("site-%03d", d/100)
			rec.MessageID, rec.Received = strconv.Itoa(round), ts
			for i, p := range turbinePoints {
				rec.Samples[i] = api.Sample{Point: p, Time: ts, Value: float64(d%97) + float64(round)*0.25 + float64(i)}
			}
			buf = api.AppendRecord(buf[:0], &rec)
			batch = append(batch, bus.Message{Value: append([]byte(nil), buf...)})
			if len(batch) == batchSize {
				flush()
			}
		}
		if len(batch) > 0 {
			flush()
		}
	}
	elapsed := time.Since(t0)
	mem := testkit.ReportMemoryGrowth(b, base, series, "series", *heapProfile)
	require.Equal(b, uint64(series), db.Head().NumSeries())
	b.ReportMetric(float64(series*samplesPerSeries)/elapsed.Seconds(), "samples/s")
	b.Logf("%d series, %d samples each in %s: %s; GOGC=%q GOMEMLIMIT=%q",
		series, samplesPerSeries, elapsed.Round(time.Millisecond), mem, os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"))
	runtime.KeepAlive(w)
	runtime.KeepAlive(latest)
}
