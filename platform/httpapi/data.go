package httpapi

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/tsdb"
)

// historyAggs maps the history API's agg parameter to PromQL range functions.
var historyAggs = map[string]string{
	"avg": "avg_over_time", "min": "min_over_time", "max": "max_over_time", "last": "last_over_time",
}

// maxHistoryPoints bounds one raw history response (a stepped one is bounded by the engine's maxPoints).
const maxHistoryPoints = tsdb.DefaultMaxPoints

// HistoryPoint is one value of a point's history.
type HistoryPoint struct {
	Time  int64   `json:"time"`
	Value float64 `json:"value"`
}

func (s *Server) routeData(mux *http.ServeMux) {
	s.handle(mux, "GET /api/v1/devices/{pk}/{dk}/latest", func(w http.ResponseWriter, r *http.Request) {
		d, ok := s.device(w, r)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"productKey": d.ProductKey, "deviceKey": d.DeviceKey, "points": s.deps.Latest.Device(d.ProductKey + "/" + d.DeviceKey)})
	})
	s.handle(mux, "GET /api/v1/assets/{id}/latest", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if a, ok := s.deps.Registry.Asset(id); !ok || !principal(r).InOrg(a.Org) {
			writeError(w, http.StatusNotFound, "asset "+id+" not found")
			return
		}
		type deviceLatest struct {
			ProductKey string         `json:"productKey"`
			DeviceKey  string         `json:"deviceKey"`
			Site       string         `json:"site"`
			Points     []ingest.Point `json:"points"`
		}
		out := []deviceLatest{}
		sub := s.deps.Registry.Subtree(id)
		for _, d := range inCallersOrgs(r, s.deps.Registry.Devices(registry.DeviceFilter{}), func(d api.Device) string { return d.Org }, false) {
			if sub[d.Site] || sub[d.Org] {
				out = append(out, deviceLatest{d.ProductKey, d.DeviceKey, d.Site, s.deps.Latest.Device(d.ProductKey + "/" + d.DeviceKey)})
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	s.handle(mux, "GET /api/v1/devices/{pk}/{dk}/points/{point}/history", s.history)
}

// history answers raw samples, or step-aggregated values when step is given.
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	pk, dk, point := r.PathValue("pk"), r.PathValue("dk"), r.PathValue("point")
	if _, ok := s.device(w, r); !ok {
		return
	}
	q := r.URL.Query()
	now := time.Now()
	start, err := parseTime(q.Get("start"), now.Add(-time.Hour))
	if err != nil {
		writeError(w, http.StatusBadRequest, "start: "+err.Error())
		return
	}
	end, err := parseTime(q.Get("end"), now)
	if err != nil {
		writeError(w, http.StatusBadRequest, "end: "+err.Error())
		return
	}
	if end.Before(start) {
		writeError(w, http.StatusBadRequest, "end is before start")
		return
	}
	agg := q.Get("agg")
	if agg == "" {
		agg = "avg"
	}
	fn, ok := historyAggs[agg]
	if !ok {
		writeError(w, http.StatusBadRequest, "agg must be one of avg, min, max, last")
		return
	}
	matchers := []*labels.Matcher{
		labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, api.MetricName(point)),
		labels.MustNewMatcher(labels.MatchEqual, ingest.LabelProduct, pk),
		labels.MustNewMatcher(labels.MatchEqual, ingest.LabelDevice, dk),
		labels.MustNewMatcher(labels.MatchEqual, ingest.LabelPoint, point),
	}
	var out []HistoryPoint
	if q.Get("step") == "" {
		out, err = s.rawHistory(r, start, end, matchers)
	} else {
		step, perr := parseDuration(q.Get("step"))
		if perr != nil || step <= 0 {
			writeError(w, http.StatusBadRequest, "step must be a positive duration such as 1m or 30s")
			return
		}
		out, err = s.stepHistory(r, start, end, step, fn, matchers)
	}
	if err != nil {
		status := limitStatus(err)
		if status == 0 {
			status = http.StatusInternalServerError
		}
		writeError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"productKey": pk, "deviceKey": dk, "point": point, "agg": agg, "values": out})
}

// rawHistory reads samples as the engine would: in a query slot, within the query timeout.
func (s *Server) rawHistory(r *http.Request, start, end time.Time, ms []*labels.Matcher) ([]HistoryPoint, error) {
	release, err := s.deps.Engine.AcquireQuerySlot(r.Context(), r.URL.Path)
	defer release()
	if err != nil {
		return nil, fmt.Errorf("query history: %w", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.deps.Engine.Config().Timeout)
	defer cancel()
	querier, err := s.deps.Storage.Querier(start.UnixMilli(), end.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("query history: %w", err)
	}
	defer querier.Close()
	out := []HistoryPoint{}
	set := querier.Select(ctx, false, nil, ms...)
	var it chunkenc.Iterator
	for set.Next() {
		it = set.At().Iterator(it)
		for it.Next() == chunkenc.ValFloat {
			t, v := it.At()
			if len(out) == maxHistoryPoints {
				return nil, fmt.Errorf("more than %d samples in range; give a step", maxHistoryPoints)
			}
			out = append(out, HistoryPoint{t, v})
		}
	}
	return out, set.Err()
}

func (s *Server) stepHistory(r *http.Request, start, end time.Time, step time.Duration, fn string, ms []*labels.Matcher) ([]HistoryPoint, error) {
	sel := "{"
	for i, m := range ms {
		if i > 0 {
			sel += ","
		}
		sel += m.Name + "=" + strconv.Quote(m.Value)
	}
	expr := fmt.Sprintf("%s(%s}[%s])", fn, sel, promDuration(step))
	qry, err := s.deps.Engine.NewRangeQuery(r.Context(), s.deps.Storage, nil, expr, start, end, step)
	if err != nil {
		return nil, fmt.Errorf("history query: %w", err)
	}
	defer qry.Close()
	res := qry.Exec(r.Context())
	if res.Err != nil {
		return nil, fmt.Errorf("history query: %w", res.Err)
	}
	out := []HistoryPoint{}
	if m, ok := res.Value.(promql.Matrix); ok && len(m) > 0 {
		for _, p := range m[0].Floats {
			out = append(out, HistoryPoint{p.T, p.F})
		}
	}
	return out, nil
}

func promDuration(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

// parseTime accepts RFC 3339 or Unix seconds (fractional) or milliseconds (13 digits), or empty for def.
func parseTime(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor a Unix timestamp", s)
	}
	if f > 1e12 { // milliseconds
		return time.UnixMilli(int64(f)), nil
	}
	return time.Unix(0, int64(f*1e9)), nil
}

// parseDuration accepts Go durations (1m30s) or seconds (90).
func parseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(f * float64(time.Second)), nil
}
