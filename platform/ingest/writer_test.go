package ingest_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/tsdb/tsdbtest"
)

// TestWriterSeries sends devices' points in changing orders, with and without
// quality, and with more points than a device's linear lookup covers: every
// sample lands in its own series and Latest keeps the newest value per point.
func TestWriterSeries(t *testing.T) {
	db := tsdbtest.Open(t)
	latest := ingest.NewLatest()
	w := ingest.NewWriter(db, latest, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	rng := rand.New(rand.NewPCG(1, 2))
	devices := map[string]int{"few": 3, "many": 50}
	const rounds = 5
	for round := range rounds {
		var batch []bus.Message
		for dev, n := range devices {
			r := api.Record{Kind: api.RecordPost, Org: "demo", Site: "s", Product: "p", Device: dev, Received: int64(1000 * (round + 1))}
			for _, i := range rng.Perm(n) {
				r.Samples = append(r.Samples, api.Sample{Point: fmt.Sprintf("P%02d", i), Time: r.Received,
					Value: float64(100*i + round), Quality: uint8(i % 2), HasQuality: i%2 == 1})
			}
			batch = append(batch, bus.Message{Value: api.AppendRecord(nil, &r)})
		}
		require.NoError(t, w.Handle(context.Background(), batch))
	}
	for dev, n := range devices {
		pts := latest.Device("p/" + dev)
		require.Len(t, pts, n)
		for i, p := range pts {
			require.Equal(t, ingest.Point{Point: fmt.Sprintf("P%02d", i), Time: rounds * 1000, Value: float64(100*i + rounds - 1), Quality: uint8(i % 2)}, p)
		}
	}
	require.Empty(t, latest.Device("p/none"))
	require.NotNil(t, latest.Device("p/none"), "an unknown device has no points, not null")

	q, err := db.Querier(0, 1<<62)
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, ingest.LabelDevice, "many"))
	var series int
	var it chunkenc.Iterator
	for set.Next() {
		series++
		ls := set.At().Labels()
		var i int
		_, err := fmt.Sscanf(ls.Get(ingest.LabelPoint), "P%02d", &i)
		require.NoError(t, err)
		quality := ls.Get(labels.MetricName) == ls.Get(ingest.LabelPoint)+ingest.QualitySuffix
		var got []float64
		it = set.At().Iterator(it)
		for it.Next() == chunkenc.ValFloat {
			_, v := it.At()
			got = append(got, v)
		}
		for round, v := range got {
			if quality {
				require.Equal(t, 1.0, v, ls.String())
			} else {
				require.Equal(t, float64(100*i+round), v, ls.String())
			}
		}
		require.Len(t, got, rounds, ls.String())
	}
	require.NoError(t, set.Err())
	require.Equal(t, 50+25, series, "50 value series and 25 quality series")
}
