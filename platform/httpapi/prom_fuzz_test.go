package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/tsdb"
	"github.com/gale-iot/gale/platform/tsdb/tsdbtest"
)

// promEndpoints are the query API endpoints the fuzz target calls, by its first argument.
var promEndpoints = []string{"query", "query_range", "series", "labels", "label/device/values", "query_exemplars", "format_query", "parse_query",
	"rules", "alerts"}

// fuzzCallers are who the fuzz target calls as, by its first argument
// divided by the number of endpoints: a cluster account, a viewer of the
// series' org (demo) and one of another org, who must never see "demo".
var fuzzCallers = []registry.Principal{
	{Name: "root", Role: api.RoleAdmin},
	{Name: "demo-viewer", Org: "demo", Role: api.RoleViewer},
	{Name: "other-viewer", Org: "other", Role: api.RoleViewer},
}

// FuzzPromQueryAPI calls the Prometheus-compatible API's handler, without
// guard's recover, over a TSDB with a few series of org demo, with any query
// string and parameters, from a browser (an Origin header), as a cluster
// account or a viewer of demo or of another org. It must never panic and
// must always answer the API's JSON; a 500 would be an engine or storage
// fault; the other org's viewer never gets anything of demo (unless the
// query names it, which errors echo). Its corpus keeps the two inputs that crashed the node.
func FuzzPromQueryAPI(f *testing.F) {
	for _, q := range []string{
		`temp`, `max_over_time(temp[5m:])`, `max_over_time(temp[5m:1m])`, `rate(temp[0s:])`, `temp[5m:0s]`,
		`max_over_time(temp[1h:1ms])`, `sum_over_time(temp[1y:1ms])`, `temp @ 0`, `temp @ start()`, `temp @ end() offset 1h`,
		`temp offset -1h`, `max_over_time(temp[1h:1m] @ end() offset -5m)`, `rate(temp[-5m])`, `temp[-1m:1m]`,
		`info(temp)`, `limitk(2, temp)`, `limit_ratio(0.5, temp)`, `limit_ratio(-1, temp)`,
		`histogram_quantile(0.9, rate(temp[5m]))`, `histogram_quantile(NaN, temp)`, `histogram_fraction(0, 1, temp)`, `histogram_count(temp)`,
		`label_replace(temp, "x", "$1", "device", "(.*")`, `label_replace(temp, "__name__", "$99", "device", "(?:)*")`,
		`label_join(temp, "x", "", "device", "device")`, `quantile_over_time(2, temp[1h])`, `predict_linear(temp[1h], 1e308)`,
		`topk(9223372036854775807, temp)`, `count_values("device", temp)`, `sort_by_label(temp, "device")`,
		`temp[292y]`, `temp[100000000000h]`, `max_over_time(max_over_time(max_over_time(temp[5m:])[5m:])[5m:])`,
		`((((((((((temp))))))))))`, `-(-(-(-(-temp))))`, `temp / on(device) group_left temp`, `absent_over_time(nope[1h:])`,
		`time() + 1e308 * 1e308`, `vector(time())[5m:1s]`, `scalar(temp)`, `timestamp(temp @ 1e10)`, `deriv(temp[1h:])`,
		`{__name__=~".+"}`, `{device=~"d.*|.*"}`, `{__name__!=""}[5m]`, `sum by (__name__) ({__name__=~"temp"})`, `temp[1h:(1ms*2)]`, `temp[step():]`,
	} {
		for _, endpoint := range []uint8{0, 1} {
			f.Add(endpoint, q, "1700000000", "1700003600", "60")
		}
	}
	f.Add(uint8(2), `{__name__=~".+"}`, "-9999999999", "9999999999", "")
	f.Add(uint8(1), `temp`, "0", "1e18", "0.001")
	f.Add(uint8(1), `temp`, "2006-01-02T15:04:05Z", "NaN", "-1")
	f.Add(uint8(4), `temp`, "", "", "")
	for caller := range fuzzCallers {
		for endpoint := range promEndpoints {
			f.Add(uint8(caller*len(promEndpoints)+endpoint), `{__name__=~".+"}`, "1700000000", "1700003600", "60")
		}
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	db, _ := tsdbtest.OpenWithSeries(f, 5)
	engine := tsdbtest.NewEngine(f, tsdb.QueryConfig{Timeout: 200 * time.Millisecond, MaxQueueWait: 100 * time.Millisecond, MaxSamples: 200_000}, log, reg)
	h, err := newPromAPI(DefaultConfig(), Deps{Storage: db, Engine: engine, Gatherer: reg}, log, reg)
	require.NoError(f, err)

	f.Fuzz(func(t *testing.T, endpoint uint8, query, start, end, step string) {
		form := url.Values{"query": {query}, "match[]": {query}, "start": {start}, "end": {end}, "step": {step}, "time": {end}}
		// GET: every endpoint has it (label values has only it).
		req := httptest.NewRequest(http.MethodGet, "/prometheus/api/v1/"+promEndpoints[int(endpoint)%len(promEndpoints)]+"?"+form.Encode(), nil)
		caller := fuzzCallers[int(endpoint)/len(promEndpoints)%len(fuzzCallers)]
		req = req.WithContext(WithPrincipal(req.Context(), caller))
		req.Header.Set("Origin", "https://grafana.example")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.NotEqual(t, http.StatusInternalServerError, rec.Code, rec.Body.String())
		var resp struct {
			Status string `json:"status"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &resp), "%d %s", rec.Code, rec.Body.String())
		require.Contains(t, []string{"success", "error"}, resp.Status)
		if caller.Org == "other" && !strings.Contains(strings.ToLower(query), "demo") && !strings.Contains(query, `"d`) {
			require.NotContains(t, rec.Body.String(), "demo", "%s as %s", query, caller.Name)
			require.NotRegexp(t, `"d[0-9]"`, rec.Body.String(), "%s as %s", query, caller.Name)
		}
	})
}
