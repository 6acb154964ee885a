package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/scrape"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/gale-iot/gale/platform/tsdb"
)

// newPromAPI mounts Prometheus's own HTTP API package (web/api/v1) under
// /prometheus/api/v1, so query, query_range, series, labels and label values
// behave exactly as Prometheus's do for Grafana and promtool. Gale has no
// scrape targets or Alertmanagers, so those endpoints answer empty lists.
//
// Hardening on top of it: a CORS origin regexp is always set (web/api/v1
// dereferences a nil one as soon as a request carries an Origin header),
// errors of Gale's query limits get their status through the API's own
// OverrideErrorCode hook, and the endpoints that read the TSDB without the
// engine (series, labels, label values, exemplars) take a query slot and the
// query timeout as the engine's queries do.
func newPromAPI(cfg Config, deps Deps, log *slog.Logger, reg prometheus.Registerer) (http.Handler, error) {
	start := time.Now()
	cors, err := corsRegexp(cfg.CORSOrigin)
	if err != nil {
		return nil, fmt.Errorf("http.corsOrigin: %w", err)
	}
	var override v1.OverrideErrorCode = limitErrorCode
	ready := func(f http.HandlerFunc) http.HandlerFunc { return f }
	a := v1.NewAPI(
		deps.Engine,
		orgQueryable{deps.Storage},
		nil, // no remote-write receiver
		orgQueryable{deps.Storage},
		func(context.Context) v1.ScrapePoolsRetriever { return noTargets{} },
		func(context.Context) v1.TargetRetriever { return noTargets{} },
		func(context.Context) v1.AlertmanagerRetriever { return noTargets{} },
		func() config.Config { return config.DefaultConfig },
		map[string]string{},
		v1.GlobalURLOptions{ListenAddress: "gale", Host: "gale", Scheme: "http"},
		ready,
		nil, // no TSDB admin API
		"",
		false, false, 0,
		log.With("component", "promapi"),
		rulesFor(deps.PromRules),
		0, 0, 0,
		false,
		cors,
		func() (v1.RuntimeInfo, error) {
			cwd, _ := os.Getwd()
			return v1.RuntimeInfo{StartTime: start, CWD: cwd, ServerTime: time.Now(), GoroutineCount: runtime.NumGoroutine(),
				GOMAXPROCS: runtime.GOMAXPROCS(0), GOGC: os.Getenv("GOGC"), ReloadConfigSuccess: true}, nil
		},
		&v1.PrometheusVersion{Version: "gale", GoVersion: runtime.Version()},
		nil, nil,
		deps.Gatherer, reg,
		nil,
		false, nil, false, false, false,
		5*time.Minute,
		false, false,
		override,
		nil,
		v1.OpenAPIOptions{},
		deps.Engine.Parser(),
		false,
		deps.Engine.Config().Timeout,
	)
	r := route.New().WithPrefix("/prometheus/api/v1")
	a.Register(r)
	limited := limitReads(deps.Engine, r)
	mux := http.NewServeMux()
	mux.Handle("/prometheus/", r)
	for _, p := range []string{"/series", "/labels", "/label/{name}/values", "/query_exemplars"} {
		mux.Handle("/prometheus/api/v1"+p, limited)
	}
	mux.Handle("/prometheus/api/v1/rules", confineRules(deps.Engine.Parser(), r))
	mux.Handle("GET /prometheus/api/v1/alerts", orgAlerts(deps.PromRules, r))
	// Remote read and write, OTLP and the TSDB's own statistics are not served:
	// they would read or write series past the org matcher and the query limits.
	for _, p := range []string{"/read", "/write", "/otlp/", "/status/tsdb", "/status/tsdb/"} {
		mux.HandleFunc("/prometheus/api/v1"+p, func(w http.ResponseWriter, r *http.Request) {
			writePromError(w, http.StatusNotFound, errors.New(r.URL.Path+" is not served by Gale"))
		})
	}
	// An escaped slash would route past the handlers above to Prometheus's own (its router reads the unescaped path).
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(strings.ToLower(r.URL.EscapedPath()), "%2f") {
			writePromError(w, http.StatusBadRequest, errors.New("an escaped slash in the path is not served"))
			return
		}
		mux.ServeHTTP(w, r)
	}), nil
}

// corsRegexp anchors origin as Prometheus's --web.cors.origin does; empty
// matches no origin, so no browser script of another site may call the API.
func corsRegexp(origin string) (*regexp.Regexp, error) {
	if origin == "" {
		return regexp.MustCompile(`^$`), nil
	}
	return regexp.Compile("^(?:" + origin + ")$")
}

// limitErrorCode gives the refusals of Gale's query limits their HTTP status
// through web/api/v1's OverrideErrorCode (generic in the API's unexported error number type).
func limitErrorCode[N any](_ N, err error) (int, bool) {
	if code := limitStatus(err); code != 0 {
		return code, true
	}
	return 0, false
}

// limitStatus is the status of a query limit's error, 0 for other errors:
// 503 when the node is busy, 422 for a query too heavy to run, 400 for one
// that asks too much before it runs.
func limitStatus(err error) int {
	switch tsdb.RefusalReason(err) {
	case tsdb.ReasonQueueFull, tsdb.ReasonTimeout:
		return http.StatusServiceUnavailable
	case tsdb.ReasonTooManySamples:
		return http.StatusUnprocessableEntity
	case tsdb.ReasonTooManyPoints, tsdb.ReasonSubqueryPoints:
		return http.StatusBadRequest
	}
	return 0
}

// limitReads gives a request that reads the TSDB outside the engine a query
// slot (503 when none frees up in time) and the query timeout.
func limitReads(engine QueryEngine, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, err := engine.AcquireQuerySlot(r.Context(), r.URL.Path)
		defer release()
		if err != nil {
			status := limitStatus(err)
			if status == 0 {
				status = http.StatusServiceUnavailable
			}
			writePromError(w, status, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), engine.Config().Timeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// writePromError answers in the Prometheus API's error format.
func writePromError(w http.ResponseWriter, status int, err error) {
	typ := "unavailable"
	switch status {
	case http.StatusBadRequest:
		typ = "bad_data"
	case http.StatusNotFound:
		typ = "not_found"
	}
	writeJSON(w, status, map[string]string{"status": "error", "errorType": typ, "error": err.Error()})
}

type noTargets struct{}

func (noTargets) ScrapePools() []string                       { return nil }
func (noTargets) TargetsActive() map[string][]*scrape.Target  { return nil }
func (noTargets) TargetsDropped() map[string][]*scrape.Target { return nil }
func (noTargets) TargetsDroppedCounts() map[string]int        { return nil }
func (noTargets) ScrapePoolConfig(string) (*config.ScrapeConfig, error) {
	return nil, errors.New("no scrape pools")
}
func (noTargets) Alertmanagers() []*url.URL        { return nil }
func (noTargets) DroppedAlertmanagers() []*url.URL { return nil }
