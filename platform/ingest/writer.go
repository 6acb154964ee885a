// Package ingest writes telemetry records from Kafka into the TSDB and keeps
// the latest value of every point.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
)

// Writer appends telemetry batches to the TSDB; the consumer commits the
// batch's offsets only after Handle returned, so a crash replays it.
type Writer struct {
	db     storage.Appendable
	latest *Latest
	log    *slog.Logger
	// devices holds, per device, the series refs and labels of its points:
	// one map entry per device rather than per series, found once per record.
	devices map[deviceKey]*deviceSeries
	strs    interner
	rec     api.Record
	updates []update

	samples  prometheus.Counter
	rejected *prometheus.CounterVec
	records  prometheus.Counter
	commit   prometheus.Histogram
	e2e      prometheus.Histogram
}

// deviceKey identifies a device's series: the labels a record shares among its samples.
type deviceKey struct{ Org, Site, Product, Device string }

// deviceSeries are the series of one device's points.
type deviceSeries struct {
	id     string // "pk/dk", the device's key in Latest
	series []pointSeries
	next   int                // index after the last match: devices send their points in the same order
	index  map[pointKey]int32 // built once a device has many series
}

type pointKey struct {
	point   string
	quality bool
}

// pointSeries is one series of a device: its labels (whose bytes the TSDB's
// head shares: stringlabels) and the ref the TSDB returned for them.
type pointSeries struct {
	pointKey
	ref    storage.SeriesRef
	labels labels.Labels
}

// indexAbove is how many series a device has before lookups use a map.
const indexAbove = 32

// find returns the series of point (quality or value), creating it with mk.
func (d *deviceSeries) find(k pointKey, mk func() pointSeries) *pointSeries {
	if d.next < len(d.series) && d.series[d.next].pointKey == k {
		d.next++
		return &d.series[d.next-1]
	}
	if d.index != nil {
		if i, ok := d.index[k]; ok {
			d.next = int(i) + 1
			return &d.series[i]
		}
	} else {
		for i := range d.series {
			if d.series[i].pointKey == k {
				d.next = i + 1
				return &d.series[i]
			}
		}
	}
	d.series = append(d.series, mk())
	i := len(d.series) - 1
	if d.index != nil {
		d.index[k] = int32(i)
	} else if len(d.series) > indexAbove {
		d.index = make(map[pointKey]int32, len(d.series))
		for j := range d.series {
			d.index[d.series[j].pointKey] = int32(j)
		}
	}
	d.next = i + 1
	return &d.series[i]
}

// interner shares the strings that repeat across devices (org, site,
// product, point names) instead of keeping each record's copy.
type interner map[string]string

func (in interner) get(s string) string {
	if v, ok := in[s]; ok {
		return v
	}
	s = strings.Clone(s)
	in[s] = s
	return s
}

type update struct {
	device string
	p      Point
}

// NewWriter returns a writer into db that updates latest.
func NewWriter(db storage.Appendable, latest *Latest, log *slog.Logger, reg prometheus.Registerer) *Writer {
	auto := promauto.With(reg)
	w := &Writer{
		db: db, latest: latest, log: log, devices: map[deviceKey]*deviceSeries{}, strs: interner{},
		samples: auto.NewCounter(prometheus.CounterOpts{
			Name: "gale_ingest_samples_total", Help: "Samples appended to the TSDB.",
		}),
		rejected: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_ingest_rejected_samples_total", Help: "Samples the TSDB refused, by reason.",
		}, []string{"reason"}),
		records: auto.NewCounter(prometheus.CounterOpts{
			Name: "gale_ingest_records_total", Help: "Telemetry records consumed from Kafka.",
		}),
		commit: auto.NewHistogram(prometheus.HistogramOpts{
			Name: "gale_ingest_commit_seconds", Help: "Time to append and commit one batch to the TSDB.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		e2e: auto.NewHistogram(prometheus.HistogramOpts{
			Name: "gale_ingest_e2e_seconds", Help: "Time from the broker receiving a live record to its TSDB commit.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	return w
}

// Handle appends the samples of a batch of telemetry records and commits them.
// Samples the TSDB refuses (too old, conflicting duplicate) are counted and
// skipped; only a failed commit fails the batch.
func (w *Writer) Handle(ctx context.Context, batch []bus.Message) error {
	start := time.Now()
	app := w.db.Appender(ctx)
	updates := w.updates[:0]
	var oldestLive int64 = math.MaxInt64
	for i := range batch {
		if err := api.DecodeRecord(batch[i].Value, &w.rec); err != nil {
			w.rejected.WithLabelValues("undecodable").Inc()
			w.log.Warn("skipping undecodable telemetry record", "partition", batch[i].Partition, "offset", batch[i].Offset, "err", err)
			continue
		}
		w.records.Inc()
		r := &w.rec
		if r.Kind == api.RecordPost && r.Received < oldestLive {
			oldestLive = r.Received
		}
		d := w.device(r)
		for _, s := range r.Samples {
			point, ok := w.append(app, d, r, s, false, s.Value)
			if ok && s.HasQuality {
				w.append(app, d, r, s, true, float64(s.Quality))
			}
			updates = append(updates, update{d.id, Point{Point: point, Time: s.Time, Value: s.Value, Quality: s.Quality}})
		}
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("commit tsdb batch: %w", err)
	}
	w.latest.updateAll(updates)
	clear(updates) // drop the references until the next batch
	w.updates = updates[:0]
	now := time.Now()
	w.commit.Observe(now.Sub(start).Seconds())
	if oldestLive != math.MaxInt64 {
		w.e2e.Observe(now.Sub(time.UnixMilli(oldestLive)).Seconds())
	}
	return nil
}

// device returns the series of r's device, creating its entry on first sight.
func (w *Writer) device(r *api.Record) *deviceSeries {
	k := deviceKey{r.Org, r.Site, r.Product, r.Device}
	if d := w.devices[k]; d != nil {
		return d
	}
	k = deviceKey{w.strs.get(r.Org), w.strs.get(r.Site), w.strs.get(r.Product), strings.Clone(r.Device)}
	// Its first record usually carries all of its points: size for them.
	d := &deviceSeries{id: r.Product + "/" + r.Device, series: make([]pointSeries, 0, len(r.Samples))}
	w.devices[k] = d
	return d
}

// append adds one sample to its series in d, reusing the series' ref; it
// returns the shared copy of the point's name and whether the sample was stored.
func (w *Writer) append(app storage.Appender, d *deviceSeries, r *api.Record, s api.Sample, quality bool, v float64) (string, bool) {
	ps := d.find(pointKey{s.Point, quality}, func() pointSeries {
		point := w.strs.get(s.Point)
		return pointSeries{pointKey: pointKey{point, quality}, labels: KeyOf(r, point, quality).Labels()}
	})
	ref, err := app.Append(ps.ref, ps.labels, s.Time, v)
	if err != nil {
		w.rejected.WithLabelValues(rejectReason(err)).Inc()
		w.log.Debug("sample refused by tsdb", "device", r.Device, "point", s.Point, "time", s.Time, "err", err)
		return ps.point, false
	}
	ps.ref = ref
	w.samples.Inc()
	return ps.point, true
}

func rejectReason(err error) string {
	switch {
	case errors.Is(err, storage.ErrOutOfBounds), errors.Is(err, storage.ErrTooOldSample):
		return "too_old"
	case errors.Is(err, storage.ErrOutOfOrderSample):
		return "out_of_order"
	case errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return "conflicting_duplicate"
	default:
		return "other"
	}
}
