package tsdb_test

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/tsdb"
	"github.com/gale-iot/gale/twins/farm"
)

var (
	diskTurbines = flag.Int("disk.turbines", 5, "turbines of BenchmarkDiskBytesPerSample's farm")
	diskHours    = flag.Int("disk.hours", 24, "sim hours of BenchmarkDiskBytesPerSample")
)

// BenchmarkDiskBytesPerSample writes a day of a twin farm (-disk.turbines
// turbines and a met mast, the twins' own physics and noise, seed 1) into a
// TSDB opened as a node opens it, compacts it into blocks and reports the
// bytes on disk per sample: all of the blocks (chunks, index, meta) and
// the chunks alone.
//
//   - gateway: what the edge publishes of Modbus gateway devices: each
//     register map's poll groups (turbine: 14 points every 1 s, 6 every
//     10 s; mast: 5 every 1 s), values quantised by their registers
//     (uint16 × 0.1 m/s, float32 at 1 kW …), every point every poll.
//
//   - direct: what direct MQTT twins post: every point every 10 s, the
//     model's values at their thing model's resolution.
//
//   - gateway-raw: gateway's samples, but each register's raw integer
//     stored instead of raw × scale + offset (float32 registers alike): the
//     same information, to show what the float64 form of decimal values
//     costs Gorilla. Nothing publishes this; it is for comparison.
//
//     go test -run '^$' -bench DiskBytesPerSample -benchtime 1x ./platform/tsdb/
func BenchmarkDiskBytesPerSample(b *testing.B) {
	for _, profile := range []string{"gateway", "direct", "gateway-raw"} {
		b.Run(profile, func(b *testing.B) {
			for range b.N {
				benchDisk(b, profile)
			}
		})
	}
}

// pollPoint is one point the edge reads: its register and poll interval.
type pollPoint struct {
	reg   regmap.Register
	every time.Duration
}

func pollPlan(b *testing.B, mapName string) []pollPoint {
	m, err := regmap.Shipped(mapName)
	require.NoError(b, err)
	every := map[string]time.Duration{}
	for _, g := range m.Groups {
		every[g.Name] = g.Interval
	}
	var out []pollPoint
	for _, r := range m.Registers {
		if r.Area == regmap.AreaCoil {
			continue // commands, not measurements
		}
		g := r.Group
		if g == "" {
			g = m.Groups[0].Name
		}
		require.NotZero(b, every[g], "%s: group %q", r.Point, g)
		out = append(out, pollPoint{r, every[g]})
	}
	return out
}

func benchDisk(b *testing.B, profile string) {
	direct, raw := profile == "direct", profile == "gateway-raw"
	ctx := context.Background()
	cfg := tsdb.DefaultConfig()
	cfg.Dir = b.TempDir()
	db, err := tsdb.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(b, err)
	defer db.Close()

	start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	fc := farm.DefaultConfig()
	fc.Count, fc.Rows = *diskTurbines, 1
	fm, err := farm.New(fc, 1, start, nil)
	require.NoError(b, err)
	fm.Step(0)
	turbinePlan, mastPlan := pollPlan(b, "wind-turbine"), pollPlan(b, "met-mast")
	products, err := registry.ShippedProducts()
	require.NoError(b, err)
	model := map[string]api.Measurepoint{} // product/point → measurepoint
	for _, p := range products {
		for _, mp := range p.Model.Measurepoints {
			model[p.Key+"/"+mp.ID] = mp
		}
	}

	type series struct {
		ref    storage.SeriesRef
		labels labels.Labels
	}
	refs := map[[2]string]*series{}
	samples := 0
	app := db.Appender(ctx)
	add := func(device, product, point string, t time.Time, v float64) {
		k := [2]string{device, point}
		s := refs[k]
		if s == nil {
			s = &series{labels: ingest.KeyOf(&api.Record{Org: "demo", Site: fc.Site, Product: product, Device: device}, point, false).Labels()}
			refs[k] = s
		}
		ref, err := app.Append(s.ref, s.labels, t.UnixMilli(), v)
		require.NoError(b, err)
		s.ref = ref
		samples++
	}
	publish := func(device, product string, plan []pollPoint, values map[string]float64, t time.Time, elapsed time.Duration) {
		for _, p := range plan {
			v, ok := values[p.reg.Point]
			if !ok {
				continue // the heartbeat and the commands are not measurements
			}
			if direct {
				if elapsed%(10*time.Second) == 0 {
					add(device, product, p.reg.Point, t, model[product+"/"+p.reg.Point].Round(v))
				}
				continue
			}
			if elapsed%p.every != 0 {
				continue
			}
			words, err := p.reg.Encode(p.reg.Clamp(v))
			require.NoError(b, err)
			reg := p.reg
			if raw {
				reg.Scale, reg.Offset = 1, 0
			}
			q, err := reg.Decode(words)
			require.NoError(b, err)
			add(device, product, p.reg.Point, t, q)
		}
	}
	t0 := time.Now()
	day := time.Duration(*diskHours) * time.Hour
	for elapsed := time.Duration(0); elapsed < day; elapsed += time.Second {
		fm.Step(time.Second)
		t := start.Add(elapsed)
		for _, tb := range fm.Turbines() {
			publish(tb.ID(), "wind-turbine", turbinePlan, tb.Points(), t, elapsed)
		}
		if m := fm.Mast(); m != nil {
			publish(m.ID(), "met-mast", mastPlan, m.Points(), t, elapsed)
		}
		if elapsed%time.Minute == 0 {
			require.NoError(b, app.Commit())
			app = db.Appender(ctx)
		}
		if elapsed%time.Hour == 0 {
			require.NoError(b, db.Compact(ctx)) // as the DB's own loop does every minute
		}
	}
	require.NoError(b, app.Commit())
	require.NoError(b, db.Compact(ctx))
	// What remains in the head (the last hours) is written as a block too.
	head := db.Head()
	require.NoError(b, db.CompactHead(promtsdb.NewRangeHead(head, head.MinTime(), head.MaxTime())))
	require.NoError(b, db.Compact(ctx))
	elapsed := time.Since(t0)

	var blockBytes, chunkBytes int64
	var blockSamples uint64
	for _, blk := range db.Blocks() {
		meta := blk.Meta()
		blockSamples += meta.Stats.NumSamples
		dir := filepath.Join(cfg.Dir, meta.ULID.String())
		require.NoError(b, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			blockBytes += info.Size()
			if filepath.Base(filepath.Dir(path)) == "chunks" {
				chunkBytes += info.Size()
			}
			return nil
		}))
		b.Logf("block %s %s–%s: %d series, %d samples, %d chunks",
			meta.ULID, time.UnixMilli(meta.MinTime).UTC().Format("15:04"), time.UnixMilli(meta.MaxTime).UTC().Format("15:04"),
			meta.Stats.NumSeries, meta.Stats.NumSamples, meta.Stats.NumChunks)
	}
	require.Equal(b, uint64(samples), blockSamples, "every sample is in a block")
	logPointBytes(b, db)
	b.ReportMetric(float64(blockBytes)/float64(blockSamples), "block-B/sample")
	b.ReportMetric(float64(chunkBytes)/float64(blockSamples), "chunk-B/sample")
	b.ReportMetric(float64(blockSamples), "samples")
	b.Logf("%d series, %d samples over %s in %d blocks: %d bytes of blocks (%d of chunks) = %.3f B/sample (%.3f in chunks); %s",
		len(refs), blockSamples, day, len(db.Blocks()), blockBytes, chunkBytes,
		float64(blockBytes)/float64(blockSamples), float64(chunkBytes)/float64(blockSamples), elapsed.Round(time.Millisecond))
}

// logPointBytes logs the chunk bytes per sample of each point, summed over
// the farm's devices, largest first: which values Gorilla cannot compress.
func logPointBytes(b *testing.B, db *promtsdb.DB) {
	q, err := db.ChunkQuerier(math.MinInt64, math.MaxInt64)
	require.NoError(b, err)
	defer q.Close()
	type acc struct{ bytes, samples int }
	by := map[string]*acc{}
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, ingest.LabelPoint, ".+"))
	var it chunks.Iterator
	for set.Next() {
		point := set.At().Labels().Get(ingest.LabelPoint)
		a := by[point]
		if a == nil {
			a = &acc{}
			by[point] = a
		}
		it = set.At().Iterator(it)
		for it.Next() {
			c := it.At().Chunk
			a.bytes += len(c.Bytes())
			a.samples += c.NumSamples()
		}
		require.NoError(b, it.Err())
	}
	require.NoError(b, set.Err())
	points := slices.SortedFunc(maps.Keys(by), func(x, y string) int {
		return cmp.Compare(float64(by[y].bytes)/float64(by[y].samples), float64(by[x].bytes)/float64(by[x].samples))
	})
	var sb strings.Builder
	for _, p := range points {
		fmt.Fprintf(&sb, " %s %.2f", p, float64(by[p].bytes)/float64(by[p].samples))
	}
	b.Logf("chunk bytes per sample by point:%s", sb.String())
}
