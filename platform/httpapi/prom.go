package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// newPromAPI mounts Prometheus's own HTTP API package (web/api/v1) under
// /prometheus/api/v1, so query, query_range, series, labels and label values
// behave exactly as Prometheus's do for Grafana and promtool. Gale has no
// scrape targets or Alertmanagers, so those endpoints answer empty lists.
func newPromAPI(deps Deps, log *slog.Logger, reg prometheus.Registerer) (http.Handler, error) {
	start := time.Now()
	ready := func(f http.HandlerFunc) http.HandlerFunc { return f }
	a := v1.NewAPI(
		deps.Engine,
		queryable{deps.Storage},
		nil, // no remote-write receiver
		deps.Storage,
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
		func(context.Context) v1.RulesRetriever { return deps.PromRules },
		0, 0, 0,
		false,
		nil,
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
		nil,
		nil,
		v1.OpenAPIOptions{},
		parser.NewParser(parser.Options{}),
		false,
		2*time.Minute,
	)
	r := route.New().WithPrefix("/prometheus/api/v1")
	a.Register(r)
	return r, nil
}

// queryable adapts the TSDB to the API's sample-and-chunk interface.
type queryable struct{ Storage }

func (q queryable) ChunkQuerier(int64, int64) (storage.ChunkQuerier, error) {
	return nil, errors.New("chunk queries (remote read) are not served")
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
