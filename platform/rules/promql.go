package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/gale-iot/gale/internal/logging"
	"github.com/gale-iot/gale/platform/api"
)

// PromQLDir is the subdirectory of the rules dir with Prometheus rule files (*.yml, *.yaml).
const PromQLDir = "promql"

// TSDB is what PromQL rules read and write.
type TSDB interface {
	storage.Queryable
	storage.AppendableV2
}

// QueryEngine is the PromQL engine rules run on (tsdb.Engine): the one the
// query API uses, so rules get the same parser, limits and checks.
type QueryEngine interface {
	promql.QueryEngine
	// Parser parses PromQL as the engine does.
	Parser() parser.Parser
	// CheckExpr refuses an expression the engine's limits refuse (parse errors included).
	CheckExpr(expr string) error
}

// PromQLRules evaluates alerting and recording rules in the Prometheus
// rule-file format with Prometheus's own rule manager over the embedded TSDB;
// its alerts join the same lifecycle store as streaming alerts.
type PromQLRules struct {
	dir     string
	manager *promrules.Manager
	loader  ruleLoader
	store   AlertStore
	log     *slog.Logger

	refused prometheus.Gauge
	panics  prometheus.Counter
}

// NewPromQLRules loads the rule files of dir/promql. A file that fails
// validation is refused (logged with file:line) and the others are loaded.
func NewPromQLRules(ctx context.Context, dir string, db TSDB, engine QueryEngine, store AlertStore, log *slog.Logger, reg prometheus.Registerer) (*PromQLRules, error) {
	p := &PromQLRules{dir: filepath.Join(dir, PromQLDir), store: store, log: log, loader: ruleLoader{engine: engine, log: log},
		refused: newRefusedGauge("promql"),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gale_promql_rule_panics_total", Help: "PromQL rule evaluations that panicked (the rule's evaluation fails; the node runs on).",
		}),
	}
	if err := registerAll(reg, p.refused, p.panics); err != nil {
		return nil, err
	}
	query := promrules.EngineQueryFunc(engine, db)
	p.manager = promrules.NewManager(&promrules.ManagerOptions{
		Context:         ctx,
		AppendableV2:    db,
		Queryable:       db,
		QueryFunc:       p.recovering(query),
		NotifyFunc:      p.notify,
		Logger:          logging.Library(log),
		Registerer:      reg,
		OutageTolerance: time.Hour,
		ForGracePeriod:  10 * time.Minute,
		ResendDelay:     time.Minute,
		GroupLoader:     p.loader,
		Parser:          engine.Parser(),
	})
	files, err := p.Files()
	if err != nil {
		return nil, err
	}
	good, errs := p.validate(files)
	for _, err := range errs {
		log.Error("promql rule file refused; the node runs on without it", "err", err)
	}
	if err := p.manager.Update(15*time.Second, good, labels.EmptyLabels(), "", nil); err != nil {
		return nil, fmt.Errorf("%w: promql rules: %v", ErrInvalid, err)
	}
	p.refused.Set(float64(len(errs)))
	return p, nil
}

// validate checks each file as the manager will load it and returns the good ones and an error for each other.
func (p *PromQLRules) validate(files []string) (good []string, errs []error) {
	for _, f := range files {
		if _, ferrs := p.loader.Load(f, false, model.UTF8Validation); len(ferrs) > 0 {
			errs = append(errs, errors.Join(ferrs...))
			continue
		}
		good = append(good, f)
	}
	return good, errs
}

// recovering turns a panic of a rule's evaluation into the rule's error: the
// rule manager evaluates on goroutines of its own, where a panic would stop
// the node, and again at every restart.
func (p *PromQLRules) recovering(query promrules.QueryFunc) promrules.QueryFunc {
	return func(ctx context.Context, qs string, t time.Time) (v promql.Vector, err error) {
		defer func() {
			if r := recover(); r != nil {
				p.panics.Inc()
				p.log.Error("promql rule evaluation panicked", "expr", qs, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				v, err = nil, fmt.Errorf("evaluation panicked: %v", r)
			}
		}()
		return query(ctx, qs, t)
	}
}

// Files lists the Prometheus rule files.
func (p *PromQLRules) Files() ([]string, error) {
	var out []string
	for _, pattern := range []string{"*.yml", "*.yaml"} {
		m, err := filepath.Glob(filepath.Join(p.dir, pattern))
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

// Reload reads the rule files again; when one is invalid the current rules
// stay and the error names each bad file and line.
func (p *PromQLRules) Reload() error {
	files, err := p.Files()
	if err != nil {
		return err
	}
	if _, errs := p.validate(files); len(errs) > 0 {
		return fmt.Errorf("%w: promql rules: %w", ErrInvalid, errors.Join(errs...))
	}
	if err := p.manager.Update(15*time.Second, files, labels.EmptyLabels(), "", nil); err != nil {
		return fmt.Errorf("%w: promql rules: %v", ErrInvalid, err)
	}
	p.refused.Set(0)
	return nil
}

// Run evaluates until ctx ends.
func (p *PromQLRules) Run(ctx context.Context) error {
	go p.manager.Run()
	<-ctx.Done()
	p.manager.Stop()
	return nil
}

// RuleGroups returns the loaded rule groups (also for Prometheus's /api/v1/rules).
func (p *PromQLRules) RuleGroups() []*promrules.Group { return p.manager.RuleGroups() }

// AlertingRules returns the loaded alerting rules.
func (p *PromQLRules) AlertingRules() []*promrules.AlertingRule { return p.manager.AlertingRules() }

// notify stores firing and resolved PromQL alerts as episodes keyed by their labels and activation time.
func (p *PromQLRules) notify(ctx context.Context, _ string, alerts ...*promrules.Alert) {
	for _, a := range alerts {
		name := a.Labels.Get(labels.AlertName)
		key := a.Labels.DropMetricName().String()
		started := a.ActiveAt.UnixMilli()
		var err error
		if !a.ResolvedAt.IsZero() {
			_, _, err = p.store.ResolveAlert(ctx, name, key, started, a.ResolvedAt.UnixMilli(), a.Value)
		} else if a.State == promrules.StateFiring {
			severity := a.Labels.Get("severity")
			if severity == "" {
				severity = "warning"
			}
			_, _, err = p.store.FireAlert(ctx, api.Alert{Rule: name, Severity: severity, Source: "promql", Key: key,
				Device: deviceOf(a.Labels), Site: a.Labels.Get("site"), Org: a.Labels.Get("org"), Value: a.Value,
				Message: a.Annotations.Get("summary"), StartedAt: started, FiredAt: a.FiredAt.UnixMilli()})
		}
		if err != nil {
			p.log.Warn("store promql alert", "alert", name, "err", err)
		}
	}
}

func deviceOf(l labels.Labels) string {
	if d := l.Get("device"); d != "" {
		return l.Get("product") + "/" + d
	}
	return ""
}
