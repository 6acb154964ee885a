package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/apiclient"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/httpapi"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/remotewrite"
	"github.com/gale-iot/gale/platform/rules"
	"github.com/gale-iot/gale/platform/selfmon"
	"github.com/gale-iot/gale/platform/tsdb"
	"github.com/gale-iot/gale/twins/farm"
	"github.com/gale-iot/gale/twins/turbine"
)

// testAlertRule fires at once for a faulted turbine, so the ALERTS series
// the dashboards read exists within the test (the shipped PromQL alerts
// wait 5 and 10 minutes).
const testAlertRule = `groups:
  - name: dashboards-test
    interval: 1s
    rules:
      - alert: TurbineFaulted
        expr: WTUR_TurSt == 3
        labels: {severity: major}
        annotations: {summary: "{{ $labels.device }} is in fault"}
`

// History posted by the test: 6 minutes of the twin farm at 5 s steps; the
// check looks at the last 5 minutes.
const (
	history   = 6 * time.Minute
	simStep   = 5 * time.Second
	checkSpan = 5 * time.Minute
	faulted   = "WT04"
)

// TestLiveNode starts a node with the demo fleet, feeds it realistic data and
// runs every panel query of every dashboard against it.
func TestLiveNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and feeds it minutes of data")
	}
	cfg := nodetest.Config(t)
	// A remote-write endpoint, so the node exports the remote-write metrics too.
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(receiver.Close)
	cfg.RemoteWrite = []remotewrite.Config{{Name: "test", URL: receiver.URL + "/api/v1/write"}}
	require.NoError(t, cfg.Complete())
	require.NoError(t, rules.InstallShipped(cfg.Rules.Dir))
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Rules.Dir, rules.PromQLDir, "dashboards-test.rules.yml"), []byte(testAlertRule), 0o644))
	h := nodetest.Start(t, cfg)
	require.NoError(t, node.SeedDemo(context.Background(), h.Node.Registry, node.Demo{Turbines: 4}))
	gale := newAPI(t, h.BaseURL+"/prometheus", h.Token)
	self := startSelfMonitoring(t, h)
	feed(t, h)

	ctx := context.Background()
	eventually := func(q Querier, expr string, why string) {
		t.Helper()
		require.Eventually(t, func() bool {
			n, err := q.Query(ctx, expr, time.Now())
			return err == nil && n > 0
		}, 45*time.Second, 200*time.Millisecond, why)
	}
	eventually(gale, `count(WTUR_W) == 4`, "every turbine's power is stored")
	eventually(gale, `site:WTUR_W:sum`, "the shipped recording rules ran")
	eventually(gale, `ALERTS{alertname="TurbineFaulted", alertstate="firing"}`, "the test alert fires")
	eventually(self, `gale_alert_transitions_total{kind="firing"}`, "a streaming alert fired and self-monitoring saw it")
	// The series born at the end of feed need a few scrapes before rates over them have data.
	for _, m := range []string{"gale_broker_rejected_messages_total", "gale_broker_rejected_connects_total", "gale_ingest_rejected_samples_total", "gale_commands_completed_total"} {
		eventually(self, `count_over_time(`+m+`[1m]) >= 5`, "self-monitoring scraped "+m+" a few times")
	}
	q := router{gale: gale, self: self, selfNames: selfMetricNames()}

	t.Run("exported metrics match the maintained list", func(t *testing.T) {
		checkExportedMetrics(t, h.Node.Registerer().(prometheus.Gatherer))
	})
	t.Run("Grafana data source health check", func(t *testing.T) {
		grafanaHealthCheck(t, h, h.Token)
	})
	t.Run("every panel query returns data", func(t *testing.T) {
		for _, d := range shippedDashboards(t) {
			t.Run(d.File, func(t *testing.T) {
				problems, err := Check(ctx, q, d, checkOptions(d))
				require.NoError(t, err)
				requireOnlyEdgeProblems(t, d, problems)
			})
		}
	})
	t.Run("the check reports a misspelt metric", func(t *testing.T) {
		selector := `selector WTUR_Ww{org=~"(demo)",site=~"(demo-farm)"} selects no series`
		tests := []struct {
			name, expr string
			want       []string
		}{
			{"plain", `sum(WTUR_Ww{org=~"$org", site=~"$site"})`, []string{"query A returned no data", selector}},
			{"hidden by or vector(0)", `sum(WTUR_Ww{org=~"$org", site=~"$site"}) or vector(0)`, []string{selector}},
			{"misspelt label", `sum(WTUR_W{org=~"$org", sitee=~"$site"})`, []string{"query A returned no data", `selector WTUR_W{org=~"(demo)",sitee=~"(demo-farm)"} selects no series`}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				d := modify(t, func(m map[string]any) { firstTarget(m)["expr"] = tc.expr })
				problems, err := Check(ctx, q, d, checkOptions(d))
				require.NoError(t, err)
				var got []string
				for _, p := range problems {
					require.Equal(t, `panel 1 "Sites"`, p.Where, "only the misspelt panel is reported")
					got = append(got, p.Msg)
				}
				require.Equal(t, tc.want, got)
			})
		}
	})
	t.Run("gale dashboards check", func(t *testing.T) {
		files := thingDashboards(t)
		var stdout, stderr strings.Builder
		args := append([]string{"check", "--url", h.BaseURL, "--token-file", h.Node.TokenFile, "--range", "5m", "--var", "device=" + faulted}, files...)
		require.NoError(t, Main(ctx, args, &stdout, &stderr), stdout.String())
		require.Equal(t, "2 dashboards OK\n", stdout.String())

		stdout.Reset()
		err := Main(ctx, []string{"check", "--url", "http://" + testkit.FreeAddr(t, "tcp"), "--token-file", h.Node.TokenFile}, &stdout, &stderr)
		require.ErrorContains(t, err, "cannot query Gale at http://127.0.0.1:")
	})
	t.Run("an org's viewer token pushed to Grafana", func(t *testing.T) {
		var tok struct{ Token string }
		require.Equal(t, http.StatusCreated, h.Do(t, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "grafana", "org": "demo", "role": "viewer"}, &tok))
		file := testkit.WriteFile(t, t.TempDir(), "viewer.token", tok.Token+"\n")
		g, srv := newFakeGrafana(t, "sa-token")
		var stdout, stderr strings.Builder
		require.NoError(t, Main(ctx, []string{"push", "--grafana-url", srv.URL, "--token", "sa-token", "--gale-url", h.BaseURL, "--gale-token-file", file}, &stdout, &stderr))
		// Grafana queries Gale with the data source as pushed: its URL and header.
		ds := g.datasources[DatasourceUID]
		require.Equal(t, h.BaseURL+"/prometheus", ds["url"])
		viewer, ok := strings.CutPrefix(ds["secureJsonData"].(map[string]any)["httpHeaderValue1"].(string), "Bearer ")
		require.True(t, ok)
		require.Equal(t, tok.Token, viewer)
		grafanaHealthCheck(t, h, viewer)
		stdout.Reset()
		args := append([]string{"check", "--url", h.BaseURL, "--token-file", file, "--range", "5m", "--var", "device=" + faulted}, thingDashboards(t)...)
		require.NoError(t, Main(ctx, args, &stdout, &stderr), stdout.String())
		require.Equal(t, "2 dashboards OK\n", stdout.String())
		require.Equal(t, http.StatusForbidden, doAs(t, h, viewer, http.MethodPost, "/api/v1/tokens"), "the token Grafana holds changes nothing")
	})
	t.Run("Prometheus scrapes Gale with the shipped config", func(t *testing.T) {
		prom := startPrometheus(t, h.Node.HTTPAddr())
		eventually(prom, `up{job="gale"} == 1`, "Prometheus scrapes Gale's /metrics")
		eventually(prom, `gale_broker_samples_total{job="gale"} > 0`, "Prometheus has Gale's metrics")
		eventually(prom, `count_over_time(up{job="gale"}[10s]) >= 5`, "Prometheus scraped a few times")
		for _, d := range shippedDashboards(t) {
			if d.File != "health.json" && d.File != "loadgen.json" {
				continue
			}
			problems, err := Check(ctx, prom, d, checkOptions(d))
			require.NoError(t, err)
			requireOnlyEdgeProblems(t, d, problems)
		}
	})
}

// thingDashboards writes the dashboards of thing data only (turbine and
// wind farm) to files and returns their paths: the others also read Gale's
// own metrics, which reach only the test's self-monitoring TSDB.
func thingDashboards(t *testing.T) []string {
	dir := t.TempDir()
	var files []string
	for _, d := range shippedDashboards(t) {
		if d.File == "turbine.json" || d.File == "wind-farm.json" {
			files = append(files, filepath.Join(dir, d.File))
			require.NoError(t, os.WriteFile(files[len(files)-1], d.JSON, 0o644))
		}
	}
	return files
}

// doAs sends method path with token and an empty JSON body, and returns the status.
func doAs(t *testing.T, h *nodetest.Harness, token, method, path string) int {
	c, err := apiclient.New(h.BaseURL, apiclient.Options{Token: token})
	require.NoError(t, err)
	status, _, err := c.Send(context.Background(), method, path, struct{}{})
	require.NoError(t, err)
	return status
}

// newAPI is the Querier of the Prometheus-compatible API at url.
func newAPI(t *testing.T, url, token string) *API {
	t.Helper()
	a, err := NewAPI(url, apiclient.Options{Token: token})
	require.NoError(t, err)
	return a
}

func checkOptions(d *Dashboard) CheckOptions {
	o := CheckOptions{Range: checkSpan, ScrapeInterval: time.Second}
	if d.File == "turbine.json" {
		o.Vars = map[string]string{"device": faulted} // the turbine with a fault, its state change and its alert
	}
	return o
}

// requireOnlyEdgeProblems fails on every problem but the edge panels' (no
// edge runs in this test), and requires those to be reported.
func requireOnlyEdgeProblems(t *testing.T, d *Dashboard, problems []Problem) {
	t.Helper()
	var edge []string
	for _, q := range d.Queries() {
		if strings.Contains(q.Expr, "gale_edge_") {
			edge = append(edge, q.Where)
		}
	}
	var reported, other []string
	for _, p := range problems {
		if strings.Contains(p.Expr, "gale_edge_") {
			reported = append(reported, p.Where)
			continue
		}
		other = append(other, p.String())
	}
	require.Empty(t, other)
	require.Subset(t, reported, edge, "edge panels have no data without an edge")
}

// router sends queries on Gale's own metrics to the self-monitoring store
// and the others (thing data, recording rules, ALERTS) to the node.
type router struct {
	gale, self Querier
	selfNames  map[string]bool
}

func (r router) pick(expr string) Querier {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return r.gale
	}
	for _, vs := range selectors(e) {
		if r.selfNames[vs.Name] {
			return r.self
		}
	}
	return r.gale
}

func (r router) Query(ctx context.Context, expr string, at time.Time) (int, error) {
	return r.pick(expr).Query(ctx, expr, at)
}

func (r router) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) (int, error) {
	return r.pick(expr).QueryRange(ctx, expr, start, end, step)
}

func (r router) LabelValues(ctx context.Context, label, selector string, start, end time.Time) ([]string, error) {
	return r.pick(selector).LabelValues(ctx, label, selector, start, end)
}

func selfMetricNames() map[string]bool {
	names := map[string]bool{"up": true}
	for _, m := range ExportedMetrics() {
		for _, n := range m.SeriesNames() {
			names[n] = true
		}
	}
	return names
}

// startSelfMonitoring runs platform/selfmon on the node's metrics, as the
// node will once wired (see the package doc), into a TSDB of its own served
// by Gale's query API: a node does not expose its TSDB to tests. It scrapes
// every second so rates have data within the test.
func startSelfMonitoring(t *testing.T, h *nodetest.Harness) *API {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := tsdb.Open(tsdb.Config{Dir: t.TempDir(), OutOfOrderWindow: time.Hour, Retention: 24 * time.Hour}, log, prometheus.NewRegistry())
	require.NoError(t, err)
	sc, err := selfmon.New(selfmon.Config{Interval: time.Second, Instance: h.Node.HTTPAddr()}, h.Node.Registerer().(prometheus.Gatherer), db, log)
	require.NoError(t, err)
	engine, err := tsdb.NewEngine(tsdb.DefaultQueryConfig(), t.TempDir(), log, prometheus.NewRegistry())
	require.NoError(t, err)
	srv, err := httpapi.New(httpapi.Config{Addr: "127.0.0.1:0"}, httpapi.Deps{
		Registry: h.Node.Registry, Storage: db, Engine: engine, Gatherer: prometheus.NewRegistry(),
	}, log, prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	t.Cleanup(func() { // after both have stopped
		require.NoError(t, db.Close())
		require.NoError(t, engine.Close())
	})
	testkit.RunUntilEnd(t, sc.Run)
	testkit.RunUntilEnd(t, srv.Run)
	return newAPI(t, "http://"+srv.Addr()+"/prometheus", h.Token)
}

// feed posts 6 minutes of the twin farm (4 turbines and the met mast, every
// IEC point, WTUR.W with its quality flag); WT04 gets a pitch fault half way
// (a state change and a fault event, which fires the shipped turbine-fault
// rule and the test's PromQL alert). Then one message the broker refuses,
// one sample the TSDB refuses, one refused login and one command.
func feed(t *testing.T, h *nodetest.Harness) {
	t.Helper()
	ctx := context.Background()
	connect := func(pk, dk string, onService device.ServiceHandler) *device.Device {
		var d api.Device
		require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/devices/"+pk+"/"+dk, nil, &d))
		c, err := device.Connect(ctx, device.Config{Broker: h.MQTTAddr(), ProductKey: pk, DeviceKey: dk, Secret: d.Secret, OnService: onService})
		require.NoError(t, err)
		t.Cleanup(c.Close)
		return c
	}
	fc := farm.DefaultConfig()
	fc.Count = 4
	fc.Wind.MeanSpeed = 10
	start := time.Now().Add(-history).Truncate(time.Second)
	var events []turbine.Event
	f, err := farm.New(fc, 11, start, func(e turbine.Event) { events = append(events, e) })
	require.NoError(t, err)

	devices := map[string]*device.Device{}
	for _, tb := range f.Turbines() {
		var svc device.ServiceHandler
		if tb.ID() == "WT02" {
			svc = func(c device.ServiceCall) (int, string, any) { return api.CodeOK, "", json.RawMessage(c.Params) }
		}
		devices[tb.ID()] = connect("wind-turbine", tb.ID(), svc)
	}
	mast := connect("met-mast", f.Mast().ID(), nil)

	steps := int(history / simStep)
	for i := 1; i <= steps; i++ {
		if i == steps/2 {
			for _, tb := range f.Turbines() {
				if tb.ID() == faulted {
					require.NoError(t, tb.Inject(turbine.FaultPitch))
				}
			}
		}
		f.Step(simStep)
		at := start.Add(time.Duration(i) * simStep)
		for _, tb := range f.Turbines() {
			pts := map[string]any{}
			for k, v := range tb.Points() {
				pts[k] = v
			}
			pts[turbine.PointW] = map[string]any{"value": pts[turbine.PointW], "quality": 0}
			require.NoError(t, devices[tb.ID()].Post(ctx, at, pts), "post %s", tb.ID())
		}
		mp := map[string]any{}
		for k, v := range f.Mast().Points() {
			mp[k] = v
		}
		require.NoError(t, mast.Post(ctx, at, mp))
		for _, e := range events {
			if !e.Active {
				continue
			}
			params, _ := json.Marshal(map[string]any{"time": e.Time.UnixMilli(), "value": map[string]any{"code": e.Code, "text": e.Text}})
			r, err := devices[e.Device].Request(ctx, api.EventPostTopic("wind-turbine", e.Device, "fault"),
				api.Request{ID: devices[e.Device].NewID(), Version: "1.0", Method: "thing.event.fault.post", Params: params})
			require.NoError(t, err)
			require.Equal(t, api.CodeOK, r.Code, r.Message)
		}
		events = events[:0]
	}

	wt01 := devices["WT01"]
	r, err := wt01.Request(ctx, wt01.PostTopic(), wt01.MeasurepointRequest("thing.measurepoint.post", time.Now(), map[string]any{"WTUR.Nope": 1}))
	require.NoError(t, err)
	require.Equal(t, api.CodeUnknownPoint, r.Code, "an unknown point is refused")
	last := start.Add(time.Duration(steps) * simStep)
	// The conflicting duplicate must come after the original is committed, not in its batch.
	require.Eventually(t, func() bool {
		s := h.Query(t, `timestamp(WTUR_VAr{device="WT01"})`, last)
		return len(s) == 1 && int64(s[0].Float()*1000) == last.UnixMilli()
	}, 30*time.Second, 50*time.Millisecond, "the last VAr sample of WT01 is stored")
	r, err = wt01.Request(ctx, wt01.PostTopic(), wt01.MeasurepointRequest("thing.measurepoint.post", last, map[string]any{turbine.PointVAr: 123.456}))
	require.NoError(t, err)
	require.Equal(t, api.CodeOK, r.Code, "a conflicting duplicate: the broker takes it, the TSDB refuses it")

	var d api.Device
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/devices/wind-turbine/WT03", nil, &d))
	_, err = device.Connect(ctx, device.Config{Broker: h.MQTTAddr(), ProductKey: "wind-turbine", DeviceKey: "WT03", Secret: d.Secret + "x"})
	require.ErrorIs(t, err, device.ErrRefused)

	var cmd api.Command
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodPost, "/api/v1/devices/wind-turbine/WT02/services/setPowerLimit?timeout=10s", map[string]any{"limit": 2500}, &cmd))
}

// checkExportedMetrics compares ExportedMetrics with what the node exports:
// every listed node metric exists with its type, and every gale_ metric the
// node exports is listed.
func checkExportedMetrics(t *testing.T, g prometheus.Gatherer) {
	mfs, err := g.Gather()
	require.NoError(t, err)
	types := map[dto.MetricType]string{dto.MetricType_COUNTER: Counter, dto.MetricType_GAUGE: Gauge, dto.MetricType_HISTOGRAM: Histogram, dto.MetricType_SUMMARY: Summary}
	exported := map[string]string{}
	for _, mf := range mfs {
		exported[mf.GetName()] = types[mf.GetType()]
	}
	listed := map[string]bool{}
	for _, m := range ExportedMetrics() {
		if m.Job != JobNode {
			continue
		}
		listed[m.Name] = true
		require.Equal(t, m.Type, exported[m.Name], "listed metric %s", m.Name)
	}
	var unlisted []string
	for name := range exported {
		if strings.HasPrefix(name, "gale_") && !listed[name] {
			unlisted = append(unlisted, name)
		}
	}
	sort.Strings(unlisted)
	require.Empty(t, unlisted, "gale_ metrics the node exports that ExportedMetrics does not list")
}

// grafanaHealthCheck sends what Grafana's Prometheus data source sends when
// it is saved and tested: an instant query 1+1 (POST, time 4), buildinfo,
// and the metric browser's label values, with the data source's token.
func grafanaHealthCheck(t *testing.T, h *nodetest.Harness, token string) {
	call := func(method, path string, form url.Values, token string) (int, map[string]any) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, h.BaseURL+"/prometheus"+path, body)
		require.NoError(t, err)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return resp.StatusCode, out
	}
	status, out := call(http.MethodPost, "/api/v1/query", url.Values{"query": {"1+1"}, "time": {"4"}}, token)
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Equal(t, "success", out["status"])
	require.Equal(t, map[string]any{"resultType": "scalar", "result": []any{4.0, "2"}}, out["data"])

	status, out = call(http.MethodGet, "/api/v1/status/buildinfo", nil, token)
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Equal(t, "success", out["status"])
	require.NotEmpty(t, out["data"].(map[string]any)["version"])

	status, out = call(http.MethodGet, "/api/v1/label/__name__/values", nil, token)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, out["data"], "WTUR_W")

	status, out = call(http.MethodPost, "/api/v1/query", url.Values{"query": {"1+1"}}, "wrong")
	require.Equal(t, http.StatusUnauthorized, status, "a wrong token in the data source fails its health check")
	require.Contains(t, out["error"], "invalid token")
}

// startPrometheus runs the Debian prometheus with the shipped scrape config
// pointed at galeAddr, scraping every second, on a free loopback port.
func startPrometheus(t *testing.T, galeAddr string) *API {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (apt-get install prometheus)")
	}
	conf := string(ScrapeConfig())
	require.Contains(t, conf, `"127.0.0.1:8080"`)
	conf = strings.ReplaceAll(conf, `"127.0.0.1:8080"`, fmt.Sprintf("%q", galeAddr))
	conf = strings.ReplaceAll(conf, "scrape_interval: 15s", "scrape_interval: 1s")
	conf = strings.ReplaceAll(conf, "scrape_timeout: 10s", "scrape_timeout: 1s")
	dir := t.TempDir()
	confFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(confFile, []byte(conf), 0o644))
	addr := testkit.FreeAddr(t, "tcp")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+confFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		if err := cmd.Wait(); err != nil && !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("prometheus: %v\n%s", err, logs.String())
		}
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs.String())
		}
	})
	return newAPI(t, "http://"+addr, "")
}

// TestEdgeMetricsAreTheEdgesOwn checks the edge half of ExportedMetrics
// against the edge's source: no edge runs in these tests.
func TestEdgeMetricsAreTheEdgesOwn(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "platform", "edge", "metrics.go"))
	require.NoError(t, err)
	for _, m := range ExportedMetrics() {
		if m.Job == JobEdge {
			require.Contains(t, string(src), `"`+m.Name+`"`, "edge metric %s", m.Name)
		}
	}
}
