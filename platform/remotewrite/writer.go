// Package remotewrite ships telemetry from gale.telemetry to a
// Prometheus-compatible remote-write endpoint (Mimir, Thanos,
// VictoriaMetrics, Prometheus) as remote-write 1.0 requests.
//
// Each endpoint is fed by a Kafka consumer group of its own, like the TSDB
// writer, rather than by Prometheus's WAL-watching QueueManager
// (storage/remote.WriteStorage): the watcher drops samples older than its
// own start, so backfill (resume, edge replay, hours old) would never leave,
// and it keeps no durable position, so a restart would skip or repeat what
// the WAL held. A consumer group commits its offsets only once the endpoint
// answered, so a restart or a dead endpoint loses nothing that Kafka still
// holds, and the local TSDB's group is not held back by it.
package remotewrite

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/ingest"
)

// maxErrMsgLen bounds how much of a refusal's body is logged, as Prometheus does.
const maxErrMsgLen = 1024

// Writer sends batches of telemetry records to one endpoint. Build it with
// New and hand Handle, a bus.Handler, to a consumer of gale.telemetry: like
// the TSDB writer it has no Run of its own, the consumer is what runs.
//
// The HTTP side is a plain POST rather than storage/remote's Client.Store:
// Store reports the status code only inside an error string, which the
// requests_total{code} metric and the refusal log need. What fits is
// reused: the prompb types and their encoding, the snappy block format and
// the version header Prometheus sends, and its list of reserved headers.
//
// One request is in flight per endpoint. Requests leave in order, so a
// series split over two requests still reaches the endpoint oldest first,
// which a receiver without an out-of-order window requires.
type Writer struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client

	rec    api.Record
	series map[ingest.SeriesKey]*series
	active []*series // series with samples in the current batch, in first-seen order
	req    prompb.WriteRequest
	pb     []byte // the request marshalled
	body   []byte // pb, snappy-compressed

	sent, rejected, dropped prometheus.Counter
	requests                *prometheus.CounterVec
	retries                 prometheus.Counter
	duration                prometheus.Histogram
}

// series is one telemetry series, its org and its samples in the current batch.
type series struct {
	labels  []prompb.Label
	org     string
	samples []prompb.Sample
}

// New returns a writer to cfg's endpoint, filling cfg's defaults; its
// metrics carry the endpoint's name.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	endpoint := prometheus.Labels{"endpoint": cfg.Name}
	auto := promauto.With(reg)
	samples := auto.NewCounterVec(prometheus.CounterOpts{
		Name: "gale_remote_write_samples_total", ConstLabels: endpoint,
		Help: "Samples the endpoint accepted (sent) or refused with a 4xx that retrying cannot cure, such as 400 (rejected), and samples not sent for want of a valid org under tenantHeader (dropped).",
	}, []string{"outcome"})
	w := &Writer{
		cfg: cfg, log: log, client: &http.Client{}, series: map[ingest.SeriesKey]*series{},
		sent: samples.WithLabelValues("sent"), rejected: samples.WithLabelValues("rejected"), dropped: samples.WithLabelValues("dropped"),
		requests: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_remote_write_requests_total", ConstLabels: endpoint,
			Help: `Remote-write requests by HTTP status code ("error": no response).`,
		}, []string{"code"}),
		retries: auto.NewCounter(prometheus.CounterOpts{
			Name: "gale_remote_write_retries_total", ConstLabels: endpoint,
			Help: "Requests sent again after a 5xx, a 401, 403, 404, 408 or 429, or a network error.",
		}),
		duration: auto.NewHistogram(prometheus.HistogramOpts{
			Name: "gale_remote_write_send_duration_seconds", ConstLabels: endpoint,
			Help:    "Duration of one remote-write request, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
	}
	return w, nil
}

// Handle sends the samples of a batch of telemetry records, with the same
// series and labels as the local TSDB (ingest.SeriesKey), and returns once
// the endpoint accepted or refused every one; the consumer then commits the
// batch. Failures are retried until ctx is cancelled, when Handle returns
// ctx's error and nothing is committed: at-least-once, so after a restart
// the endpoint may receive some samples twice.
func (w *Writer) Handle(ctx context.Context, batch []bus.Message) error {
	defer w.reset()
	for i := range batch {
		if err := api.DecodeRecord(batch[i].Value, &w.rec); err != nil {
			w.log.Warn("skipping undecodable telemetry record", "partition", batch[i].Partition, "offset", batch[i].Offset, "err", err)
			continue
		}
		r := &w.rec
		for _, s := range r.Samples {
			w.add(ingest.KeyOf(r, s.Point, false), s.Time, s.Value)
			if s.HasQuality {
				w.add(ingest.KeyOf(r, s.Point, true), s.Time, float64(s.Quality))
			}
		}
	}
	return w.flush(ctx)
}

func (w *Writer) add(k ingest.SeriesKey, t int64, v float64) {
	s := w.series[k]
	if s == nil {
		s = &series{labels: prompb.FromLabels(k.Labels(), nil), org: k.Org}
		w.series[k] = s
	}
	if len(s.samples) == 0 {
		w.active = append(w.active, s)
	}
	s.samples = append(s.samples, prompb.Sample{Timestamp: t, Value: v})
}

func (w *Writer) reset() {
	for _, s := range w.active {
		s.samples = s.samples[:0]
	}
	w.active = w.active[:0]
}

// flush sends the batch's samples in requests of at most MaxSamplesPerSend;
// with a TenantHeader, each org's series go in requests of their own.
func (w *Writer) flush(ctx context.Context) error {
	if w.cfg.TenantHeader == "" {
		return w.flushTenant(ctx, "", w.active)
	}
	slices.SortStableFunc(w.active, func(a, b *series) int { return strings.Compare(a.org, b.org) })
	for rest := w.active; len(rest) > 0; {
		org := rest[0].org
		n := 1
		for n < len(rest) && rest[n].org == org {
			n++
		}
		if validTenant.MatchString(org) && org != "." && org != ".." {
			if err := w.flushTenant(ctx, org, rest[:n]); err != nil {
				return err
			}
		} else {
			for _, s := range rest[:n] {
				w.dropped.Add(float64(len(inOrder(s.samples))))
			}
			w.log.Warn("samples without a valid org are not sent under tenantHeader", "org", org, "series", n)
		}
		rest = rest[n:]
	}
	return nil
}

// flushTenant sends the samples of series under tenant ("" without a TenantHeader).
func (w *Writer) flushTenant(ctx context.Context, tenant string, active []*series) error {
	n := 0
	w.req.Timeseries = w.req.Timeseries[:0]
	for _, s := range active {
		samples := inOrder(s.samples)
		for len(samples) > 0 {
			k := min(len(samples), w.cfg.MaxSamplesPerSend-n)
			w.req.Timeseries = append(w.req.Timeseries, prompb.TimeSeries{Labels: s.labels, Samples: samples[:k]})
			samples, n = samples[k:], n+k
			if n == w.cfg.MaxSamplesPerSend {
				if err := w.send(ctx, tenant, n); err != nil {
					return err
				}
				n, w.req.Timeseries = 0, w.req.Timeseries[:0]
			}
		}
	}
	if n == 0 {
		return nil
	}
	return w.send(ctx, tenant, n)
}

// inOrder sorts a series' samples by time, as receivers refuse a series that
// goes back in time within a request, and keeps the first of samples with
// the same time, as the local TSDB does.
func inOrder(s []prompb.Sample) []prompb.Sample {
	slices.SortStableFunc(s, func(a, b prompb.Sample) int { return cmp.Compare(a.Timestamp, b.Timestamp) })
	return slices.CompactFunc(s, func(a, b prompb.Sample) bool { return a.Timestamp == b.Timestamp })
}

// send delivers w.req, holding n samples of tenant, until the endpoint accepts it
// (2xx) or refuses the samples themselves (a 4xx such as 400: retrying
// cannot help, e.g. samples out of order or outside its window); it retries
// anything else with capped exponential backoff until ctx is cancelled:
// 5xx, 429, no answer, and the 401, 403 and 404 of an endpoint that is
// misconfigured rather than the data wrong (fixing the URL or the
// credentials then ships what waited in Kafka, instead of losing it).
func (w *Writer) send(ctx context.Context, tenant string, n int) error {
	size := w.req.Size()
	w.pb = slices.Grow(w.pb[:0], size)[:size]
	if _, err := w.req.MarshalToSizedBuffer(w.pb); err != nil {
		return fmt.Errorf("encode write request: %w", err)
	}
	w.body = snappy.Encode(w.body[:cap(w.body)], w.pb)
	backoff := w.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		code, msg, err := w.post(ctx, tenant)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil && code/100 == 2:
			w.sent.Add(float64(n))
			if attempt > 1 {
				w.log.Info("remote write recovered", "attempts", attempt)
			}
			return nil
		case err == nil && code/100 == 4 && !retryable(code):
			w.rejected.Add(float64(n))
			w.log.Warn("endpoint refused samples; skipping them", "status", code, "samples", n, "message", msg)
			return nil
		case err == nil:
			err = fmt.Errorf("HTTP status %d: %s", code, msg)
		}
		w.retries.Inc()
		// One warning per outage, not one per retry: the retries counter and
		// the group's lag show how long it lasts.
		level := slog.LevelDebug
		if attempt == 1 {
			level = slog.LevelWarn
		}
		w.log.Log(ctx, level, "remote write failed; retrying until it succeeds", "samples", n, "attempt", attempt, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.cfg.MaxBackoff)
	}
}

// retryable reports whether a 4xx may succeed later without changing the request.
func retryable(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusRequestTimeout:
		return true
	}
	return false
}

// post sends w.body of tenant once and returns the status and the start of the body.
func (w *Writer) post(ctx context.Context, tenant string) (code int, msg string, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(w.body))
	if err != nil {
		return 0, "", fmt.Errorf("build request: %w", err)
	}
	for k, v := range w.cfg.Headers {
		req.Header.Set(k, v)
	}
	if w.cfg.TenantHeader != "" {
		req.Header.Set(w.cfg.TenantHeader, tenant)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "gale-remote-write")
	req.Header.Set(remote.RemoteWriteVersionHeader, remote.RemoteWriteVersion1HeaderValue)
	if w.cfg.BearerTokenFile != "" {
		tok, err := os.ReadFile(w.cfg.BearerTokenFile)
		if err != nil {
			return 0, "", fmt.Errorf("read bearer token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	start := time.Now()
	resp, err := w.client.Do(req)
	w.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		w.requests.WithLabelValues("error").Inc()
		return 0, "", err
	}
	defer resp.Body.Close()
	w.requests.WithLabelValues(strconv.Itoa(resp.StatusCode)).Inc()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrMsgLen))
	_, _ = io.Copy(io.Discard, resp.Body) // drained, so the connection is reused
	return resp.StatusCode, string(bytes.TrimSpace(b)), nil
}
