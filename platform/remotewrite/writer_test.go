package remotewrite

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/tsdb"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// receiver is a remote-write endpoint that answers the scripted statuses in
// turn (then 204) and keeps the samples of the requests it accepted.
type receiver struct {
	URL string

	mu       sync.Mutex
	statuses []int
	requests []*prompb.WriteRequest // accepted ones
	tenants  []string               // their X-Scope-OrgID
	headers  http.Header            // of the last request
}

func newReceiver(t testing.TB, statuses ...int) *receiver {
	t.Helper()
	rcv := &receiver{statuses: statuses}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		compressed, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b, err := snappy.Decode(nil, compressed)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		rcv.headers = r.Header.Clone()
		status := http.StatusNoContent
		if len(rcv.statuses) > 0 {
			status, rcv.statuses = rcv.statuses[0], rcv.statuses[1:]
		}
		if status/100 == 2 {
			rcv.requests = append(rcv.requests, &req)
			rcv.tenants = append(rcv.tenants, r.Header.Get("X-Scope-OrgID"))
		}
		http.Error(w, "scripted answer", status)
	}))
	t.Cleanup(srv.Close)
	rcv.URL = srv.URL + "/api/v1/write"
	return rcv
}

// sample is a sample of a named series, comparable across both writers.
type sample struct {
	T int64
	V float64
}

// stored returns the accepted samples by series, in the order received.
func (rcv *receiver) stored() map[string][]sample {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	out := map[string][]sample{}
	var b labels.ScratchBuilder
	for _, req := range rcv.requests {
		for _, ts := range req.Timeseries {
			k := ts.ToLabels(&b, nil).String()
			for _, s := range ts.Samples {
				out[k] = append(out[k], sample{s.Timestamp, s.Value})
			}
		}
	}
	return out
}

func (rcv *receiver) sizes() []int {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var out []int
	for _, req := range rcv.requests {
		n := 0
		for _, ts := range req.Timeseries {
			n += len(ts.Samples)
		}
		out = append(out, n)
	}
	return out
}

func newWriter(t testing.TB, cfg Config) *Writer {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Millisecond
	}
	w, err := New(cfg, discard(), prometheus.NewRegistry())
	require.NoError(t, err)
	return w
}

// records encodes telemetry records as the broker puts them on Kafka.
func records(rs ...api.Record) []bus.Message {
	var out []bus.Message
	for i := range rs {
		out = append(out, bus.Message{Offset: int64(i), Value: api.AppendRecord(nil, &rs[i])})
	}
	return out
}

// testBatch has two devices, points whose names need mapping, a quality
// flag, a backfill record, out-of-order samples and a duplicated record.
func testBatch(now int64) []bus.Message {
	live := api.Record{Kind: api.RecordPost, Org: "acme", Product: "wind-turbine", Device: "WT01", Site: "farm", Received: now, Samples: []api.Sample{
		{Point: "WTUR.W", Time: now, Value: 1834.2},
		{Point: "WNAC.WdSpd", Time: now, Value: 8.1, Quality: 2, HasQuality: true},
	}}
	return records(
		live,
		api.Record{Kind: api.RecordPost, Org: "acme", Product: "wind-turbine", Device: "WT02", Site: "farm", Received: now, Samples: []api.Sample{
			{Point: "WTUR.W", Time: now - 1000, Value: 1500},
			{Point: "WTUR.W", Time: now - 2000, Value: 1400}, // older, later in the record
		}},
		api.Record{Kind: api.RecordResume, Org: "acme", Product: "wind-turbine", Device: "WT01", Site: "farm", Received: now, Samples: []api.Sample{
			{Point: "WTUR.W", Time: now - 3*3600_000, Value: 900},
			{Point: "WNAC.WdSpd", Time: now - 3*3600_000, Value: 4, Quality: 0, HasQuality: true},
		}},
		live, // delivered twice (at-least-once upstream)
	)
}

// TestSeriesMatchTheTSDBWriter sends the same batch through the TSDB writer
// and through remote write: the endpoint must get the very series, labels
// and samples the local TSDB stores.
func TestSeriesMatchTheTSDBWriter(t *testing.T) {
	ctx := context.Background()
	batch := testBatch(time.Now().UnixMilli())

	tcfg := tsdb.DefaultConfig()
	tcfg.Dir = t.TempDir()
	db, err := tsdb.Open(tcfg, discard(), prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	require.NoError(t, ingest.NewWriter(db, ingest.NewLatest(), discard(), prometheus.NewRegistry()).Handle(ctx, batch))
	local := map[string][]sample{}
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(ctx, true, nil, labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+"))
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			ts, v := it.At()
			local[set.At().Labels().String()] = append(local[set.At().Labels().String()], sample{ts, v})
		}
	}
	require.NoError(t, set.Err())

	rcv := newReceiver(t)
	w := newWriter(t, Config{URL: rcv.URL, Headers: map[string]string{"X-Scope-OrgID": "tenant-1"}})
	require.NoError(t, w.Handle(ctx, batch))
	remote := rcv.stored()
	require.Equal(t, local, remote)
	require.Contains(t, remote, `{__name__="WNAC_WdSpd_quality", device="WT01", org="acme", point="WNAC.WdSpd", product="wind-turbine", site="farm"}`)
	require.Len(t, remote, 4)
	require.Equal(t, 8.0, testutil.ToFloat64(w.sent), "the duplicated record is sent once")

	h := rcv.headers
	require.Equal(t, "tenant-1", h.Get("X-Scope-OrgID"))
	require.Equal(t, "snappy", h.Get("Content-Encoding"))
	require.Equal(t, "application/x-protobuf", h.Get("Content-Type"))
	require.Equal(t, "0.1.0", h.Get("X-Prometheus-Remote-Write-Version"))
}

// With tenantHeader, each org's samples arrive only under its own tenant,
// all of them; samples without a valid org are dropped and counted.
func TestTenantPerOrg(t *testing.T) {
	now := time.Now().UnixMilli()
	rec := func(org, device string, n int) api.Record {
		r := api.Record{Kind: api.RecordPost, Org: org, Product: "p", Device: device, Received: now}
		for i := range n {
			r.Samples = append(r.Samples, api.Sample{Point: "A", Time: now - int64(i), Value: float64(i)})
		}
		return r
	}
	batch := records(rec("acme", "a1", 3), rec("rival", "r1", 2), rec("acme", "a2", 4), rec("", "none", 2), rec("bad org", "x", 1), rec("rival", "r2", 1))
	rcv := newReceiver(t)
	w := newWriter(t, Config{URL: rcv.URL, TenantHeader: "x-scope-orgid", MaxSamplesPerSend: 4})
	require.NoError(t, w.Handle(context.Background(), batch))

	got := map[string]map[string]int{} // tenant → device → samples
	var b labels.ScratchBuilder
	rcv.mu.Lock()
	for i, req := range rcv.requests {
		tenant := rcv.tenants[i]
		for _, ts := range req.Timeseries {
			ls := ts.ToLabels(&b, nil)
			require.Equal(t, tenant, ls.Get("org"), "a series under another org's tenant")
			if got[tenant] == nil {
				got[tenant] = map[string]int{}
			}
			got[tenant][ls.Get("device")] += len(ts.Samples)
		}
	}
	rcv.mu.Unlock()
	require.Equal(t, map[string]map[string]int{"acme": {"a1": 3, "a2": 4}, "rival": {"r1": 2, "r2": 1}}, got)
	require.Equal(t, []int{4, 3, 3}, rcv.sizes(), "acme in two requests of at most 4, rival in one")
	require.Equal(t, 10.0, testutil.ToFloat64(w.sent))
	require.Equal(t, 3.0, testutil.ToFloat64(w.dropped), "the org-less and the invalid org's samples")
}

func TestBatchesAreSplitInTimeOrder(t *testing.T) {
	now := time.Now().UnixMilli()
	r := api.Record{Kind: api.RecordResume, Org: "o", Product: "p", Device: "d", Site: "s", Received: now}
	for i := range 10 {
		r.Samples = append(r.Samples, api.Sample{Point: "A", Time: now - int64(i)*1000, Value: float64(i)})
	}
	rcv := newReceiver(t)
	w := newWriter(t, Config{URL: rcv.URL, MaxSamplesPerSend: 4})
	require.NoError(t, w.Handle(context.Background(), records(r)))
	require.Equal(t, []int{4, 4, 2}, rcv.sizes())
	got := rcv.stored()[`{__name__="A", device="d", org="o", point="A", product="p", site="s"}`]
	require.Len(t, got, 10)
	require.True(t, slices.IsSortedFunc(got, func(a, b sample) int { return int(a.T - b.T) }), "oldest first across requests: %v", got)

	require.NoError(t, w.Handle(context.Background(), records(r)), "the writer's buffers are reused")
	require.Equal(t, []int{4, 4, 2, 4, 4, 2}, rcv.sizes())
}

func TestFailedRequests(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []int
		// what the endpoint ends up with, and the counters
		stored            bool
		sent, rejected    float64
		retries           float64
		requestsByCode    map[string]float64
		nextBatchReceived bool
	}{
		{
			name: "5xx and 429 are retried until accepted", statuses: []int{500, 503, 429},
			stored: true, sent: 8, retries: 3,
			requestsByCode: map[string]float64{"500": 1, "503": 1, "429": 1, "204": 1},
		},
		{
			name: "400 is counted as rejected and skipped", statuses: []int{400},
			rejected: 8, requestsByCode: map[string]float64{"400": 1},
		},
		{
			name: "a misconfigured endpoint (401, 403, 404) is retried, not skipped", statuses: []int{401, 403, 404},
			stored: true, sent: 8, retries: 3,
			requestsByCode: map[string]float64{"401": 1, "403": 1, "404": 1, "204": 1},
		},
		{
			name: "422 is counted as rejected too", statuses: []int{422},
			rejected: 8, requestsByCode: map[string]float64{"422": 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newReceiver(t, tc.statuses...)
			w := newWriter(t, Config{URL: rcv.URL})
			require.NoError(t, w.Handle(context.Background(), testBatch(time.Now().UnixMilli())))
			require.Equal(t, tc.sent, testutil.ToFloat64(w.sent))
			require.Equal(t, tc.rejected, testutil.ToFloat64(w.rejected))
			require.Equal(t, tc.retries, testutil.ToFloat64(w.retries))
			for code, n := range tc.requestsByCode {
				require.Equal(t, n, testutil.ToFloat64(w.requests.WithLabelValues(code)), "code %s", code)
			}
			if tc.stored {
				require.Equal(t, []int{8}, rcv.sizes(), "no sample lost or sent twice")
			} else {
				require.Empty(t, rcv.sizes())
			}
		})
	}
}

func TestUnreachableEndpointHoldsTheBatchBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	w := newWriter(t, Config{URL: "http://" + addr + "/api/v1/write", MaxBackoff: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = w.Handle(ctx, testBatch(time.Now().UnixMilli()))
	require.ErrorIs(t, err, context.DeadlineExceeded, "not handled, so the consumer commits nothing")
	require.Greater(t, testutil.ToFloat64(w.retries), 3.0)
	require.InDelta(t, testutil.ToFloat64(w.retries), testutil.ToFloat64(w.requests.WithLabelValues("error")), 1, "every attempt but the last is retried")
	require.Zero(t, testutil.ToFloat64(w.sent)+testutil.ToFloat64(w.rejected))
}

func TestBearerTokenFileIsReadPerRequest(t *testing.T) {
	rcv := newReceiver(t)
	file := t.TempDir() + "/token"
	w := newWriter(t, Config{URL: rcv.URL, BearerTokenFile: file})
	for _, tok := range []string{"first", "rotated"} {
		require.NoError(t, os.WriteFile(file, []byte(tok+"\n"), 0o600))
		require.NoError(t, w.Handle(context.Background(), testBatch(time.Now().UnixMilli())))
		require.Equal(t, "Bearer "+tok, rcv.headers.Get("Authorization"))
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Name: "mimir-eu_1", URL: "https://mimir:8080/api/v1/push"}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		ok     bool
	}{
		{"good", func(*Config) {}, true},
		{"headers", func(c *Config) { c.Headers = map[string]string{"X-Scope-OrgID": "t1"} }, true},
		{"no name", func(c *Config) { c.Name = "" }, false},
		{"name with a dot", func(c *Config) { c.Name = "a.b" }, false},
		{"no url", func(c *Config) { c.URL = "" }, false},
		{"url without host", func(c *Config) { c.URL = "http:///api/v1/write" }, false},
		{"ftp url", func(c *Config) { c.URL = "ftp://host/x" }, false},
		{"reserved header", func(c *Config) { c.Headers = map[string]string{"authorization": "Basic x"} }, false},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, false},
		{"min above max backoff", func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond }, false},
		{"negative batch", func(c *Config) { c.MaxSamplesPerSend = -1 }, false},
		{"tenant header", func(c *Config) { c.TenantHeader = "X-Scope-OrgID" }, true},
		{"tenant header also a header", func(c *Config) {
			c.TenantHeader, c.Headers = "X-Scope-OrgID", map[string]string{"x-scope-orgid": "t1"}
		}, false},
		{"reserved tenant header", func(c *Config) { c.TenantHeader = "Content-Type" }, false},
		{"tenant header not a name", func(c *Config) { c.TenantHeader = "X Org:" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.change(&c)
			err := c.Validate()
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrConfig)
			}
		})
	}
	d := Config{MaxBackoff: 10 * time.Millisecond}.withDefaults()
	require.Equal(t, Config{Timeout: DefaultTimeout, MaxSamplesPerSend: DefaultMaxSamplesPerSend, MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}, d)
}
