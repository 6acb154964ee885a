package rules

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"

	"github.com/gale-iot/gale/platform/api"
)

// PromQLDir is the subdirectory of the rules dir with Prometheus rule files (*.yml, *.yaml).
const PromQLDir = "promql"

// TSDB is what PromQL rules read and write.
type TSDB interface {
	storage.Queryable
	storage.AppendableV2
}

// PromQLRules evaluates alerting and recording rules in the Prometheus
// rule-file format with Prometheus's own rule manager over the embedded TSDB;
// its alerts join the same lifecycle store as streaming alerts.
type PromQLRules struct {
	dir     string
	manager *promrules.Manager
	store   AlertStore
	log     *slog.Logger
}

// NewPromQLRules loads the rule files of dir/promql.
func NewPromQLRules(ctx context.Context, dir string, db TSDB, engine *promql.Engine, store AlertStore, log *slog.Logger, reg prometheus.Registerer) (*PromQLRules, error) {
	p := &PromQLRules{dir: filepath.Join(dir, PromQLDir), store: store, log: log}
	p.manager = promrules.NewManager(&promrules.ManagerOptions{
		Context:         ctx,
		AppendableV2:    db,
		Queryable:       db,
		QueryFunc:       promrules.EngineQueryFunc(engine, db),
		NotifyFunc:      p.notify,
		Logger:          log,
		Registerer:      reg,
		OutageTolerance: time.Hour,
		ForGracePeriod:  10 * time.Minute,
		ResendDelay:     time.Minute,
	})
	if err := p.Reload(); err != nil {
		return nil, err
	}
	return p, nil
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

// Reload reads the rule files again; on error the current rules stay.
func (p *PromQLRules) Reload() error {
	files, err := p.Files()
	if err != nil {
		return err
	}
	if err := p.manager.Update(15*time.Second, files, labels.EmptyLabels(), "", nil); err != nil {
		return fmt.Errorf("%w: promql rules: %v", ErrInvalid, err)
	}
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
