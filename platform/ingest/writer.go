// Package ingest writes telemetry records from Kafka into the TSDB and keeps
// the latest value of every point.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/segmentio/kafka-go"

	"github.com/gale-iot/gale/platform/api"
)

// Writer appends telemetry batches to the TSDB; the consumer commits the
// batch's offsets only after Handle returned, so a crash replays it.
type Writer struct {
	db     storage.Appendable
	latest *Latest
	log    *slog.Logger
	series map[SeriesKey]*seriesRef
	rec    api.Record

	samples  prometheus.Counter
	rejected *prometheus.CounterVec
	records  prometheus.Counter
	commit   prometheus.Histogram
	e2e      prometheus.Histogram
}

type seriesRef struct {
	ref    storage.SeriesRef
	labels labels.Labels
}

// NewWriter returns a writer into db that updates latest.
func NewWriter(db storage.Appendable, latest *Latest, log *slog.Logger, reg prometheus.Registerer) *Writer {
	w := &Writer{
		db: db, latest: latest, log: log, series: map[SeriesKey]*seriesRef{},
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gale_ingest_samples_total", Help: "Samples appended to the TSDB.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_ingest_rejected_samples_total", Help: "Samples the TSDB refused, by reason.",
		}, []string{"reason"}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gale_ingest_records_total", Help: "Telemetry records consumed from Kafka.",
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gale_ingest_commit_seconds", Help: "Time to append and commit one batch to the TSDB.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gale_ingest_e2e_seconds", Help: "Time from the broker receiving a live record to its TSDB commit.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	reg.MustRegister(w.samples, w.rejected, w.records, w.commit, w.e2e)
	return w
}

// Handle appends the samples of a batch of telemetry records and commits them.
// Samples the TSDB refuses (too old, conflicting duplicate) are counted and
// skipped; only a failed commit fails the batch.
func (w *Writer) Handle(ctx context.Context, batch []kafka.Message) error {
	start := time.Now()
	app := w.db.Appender(ctx)
	type update struct {
		device string
		p      Point
	}
	updates := make([]update, 0, len(batch)*8)
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
		device := r.Product + "/" + r.Device
		for _, s := range r.Samples {
			if w.append(app, r, s, false, s.Value) && s.HasQuality {
				w.append(app, r, s, true, float64(s.Quality))
			}
			updates = append(updates, update{device, Point{Point: s.Point, Time: s.Time, Value: s.Value, Quality: s.Quality}})
		}
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("commit tsdb batch: %w", err)
	}
	for _, u := range updates {
		w.latest.Update(u.device, u.p)
	}
	now := time.Now()
	w.commit.Observe(now.Sub(start).Seconds())
	if oldestLive != math.MaxInt64 {
		w.e2e.Observe(now.Sub(time.UnixMilli(oldestLive)).Seconds())
	}
	return nil
}

// append adds one sample, reusing the cached series reference; it reports whether the sample was stored.
func (w *Writer) append(app storage.Appender, r *api.Record, s api.Sample, quality bool, v float64) bool {
	key := KeyOf(r, s.Point, quality)
	sr := w.series[key]
	if sr == nil {
		sr = &seriesRef{labels: key.Labels()}
		w.series[key] = sr
	}
	ref, err := app.Append(sr.ref, sr.labels, s.Time, v)
	if err != nil {
		w.rejected.WithLabelValues(rejectReason(err)).Inc()
		w.log.Debug("sample refused by tsdb", "device", r.Device, "point", s.Point, "time", s.Time, "err", err)
		return false
	}
	sr.ref = ref
	w.samples.Inc()
	return true
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
