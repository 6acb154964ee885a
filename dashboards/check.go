package dashboards

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/apiclient"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// Querier is the part of a Prometheus-compatible HTTP API that Check uses.
type Querier interface {
	// Query evaluates expr at t and returns the number of series (or 1 for a scalar).
	Query(ctx context.Context, expr string, t time.Time) (int, error)
	// QueryRange evaluates expr over [start, end] and returns the number of series.
	QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) (int, error)
	// LabelValues returns the values of label on the series selector matches (all series when empty).
	LabelValues(ctx context.Context, label, selector string, start, end time.Time) ([]string, error)
}

// API is the Querier of a Prometheus-compatible HTTP API, through
// client_golang's client.
type API struct {
	prom *apiclient.Prometheus
}

// NewAPI returns the Querier of the API at promURL (without /api/v1):
// Gale's (http://HOST:PORT/prometheus, with its token) or a Prometheus
// server's.
func NewAPI(promURL string, o apiclient.Options) (*API, error) {
	p, err := apiclient.NewPrometheus(promURL, o)
	if err != nil {
		return nil, err
	}
	return &API{prom: p}, nil
}

// Query implements Querier.
func (a *API) Query(ctx context.Context, expr string, t time.Time) (int, error) {
	v, err := a.prom.Instant(ctx, expr, t)
	return count(v), err
}

// QueryRange implements Querier.
func (a *API) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) (int, error) {
	v, _, _, err := a.prom.QueryRange(ctx, expr, v1.Range{Start: start, End: end, Step: step})
	return count(v), err
}

// LabelValues implements Querier.
func (a *API) LabelValues(ctx context.Context, label, selector string, start, end time.Time) ([]string, error) {
	var match []string
	if selector != "" {
		match = []string{selector}
	}
	vs, _, _, err := a.prom.LabelValues(ctx, label, match, start, end)
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out, err
}

// count is the number of series of a query's answer (1 for a scalar or string).
func count(v model.Value) int {
	switch v := v.(type) {
	case model.Vector:
		return len(v)
	case model.Matrix:
		return len(v)
	case nil:
		return 0
	}
	return 1
}

// CheckOptions configure Check.
type CheckOptions struct {
	// End of the time range; default now.
	End time.Time
	// Range is how far back the range queries look; default 15m.
	Range time.Duration
	// ScrapeInterval is the data source's minimum step (Grafana's
	// timeInterval) from which $__rate_interval is derived; default 15s.
	ScrapeInterval time.Duration
	// Vars fixes variable values by name; the others take, like a freshly
	// opened dashboard, all their values (multi-value and All variables)
	// or their first one.
	Vars map[string]string
}

func (o *CheckOptions) defaults() {
	if o.End.IsZero() {
		o.End = time.Now()
	}
	if o.Range <= 0 {
		o.Range = 15 * time.Minute
	}
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = 15 * time.Second
	}
}

// Check runs a dashboard against a live Gale as Grafana would: it resolves
// the template variables with their label_values queries, then runs every
// panel and annotation query with the variables substituted (range queries
// over the range, instant ones at its end). It reports a variable without
// values, a query that fails or returns no series, and a metric selector of
// a query that selects nothing (so `x or vector(0)` cannot hide a misspelt x).
// The error is for a dashboard Check cannot interpret.
func Check(ctx context.Context, q Querier, d *Dashboard, opts CheckOptions) ([]Problem, error) {
	opts.defaults()
	start := opts.End.Add(-opts.Range)
	var problems []Problem
	add := func(where, expr, format string, args ...any) {
		problems = append(problems, Problem{Dashboard: d.File, Where: where, Expr: expr, Msg: fmt.Sprintf(format, args...)})
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		where := "variable $" + v.Name
		if fixed, ok := opts.Vars[v.Name]; ok {
			vars[v.Name] = fixed
			continue
		}
		if v.Type != "query" {
			return nil, fmt.Errorf("dashboard %s: %s: only query variables can be resolved, this one is %q", d.File, where, v.Type)
		}
		sel, label, ok := labelValuesQuery(v.QueryText())
		if !ok {
			return nil, fmt.Errorf("dashboard %s: %s: want a label_values query", d.File, where)
		}
		sel = substitute(sel, lookup(vars))
		values, err := q.LabelValues(ctx, label, sel, start, opts.End)
		if err != nil {
			add(where, sel, "label values: %v", err)
		} else if len(values) == 0 {
			add(where, sel, "no values for label %s", label)
		}
		vars[v.Name] = variableValue(v, values)
	}
	for _, query := range d.Queries() {
		step := stepFor(query.Interval, opts)
		local := map[string]string{
			"__interval": model.Duration(step).String(), "__interval_ms": strconv.FormatInt(step.Milliseconds(), 10),
			"__rate_interval": model.Duration(max(step+opts.ScrapeInterval, 4*opts.ScrapeInterval)).String(),
			"__range":         model.Duration(opts.Range).String(), "__range_s": strconv.Itoa(int(opts.Range.Seconds())),
		}
		for k, v := range vars {
			local[k] = v
		}
		expr := substitute(query.Expr, lookup(local))
		run := func(e string) (int, error) {
			if query.Instant {
				return q.Query(ctx, e, opts.End)
			}
			return q.QueryRange(ctx, e, start, opts.End, step)
		}
		n, err := run(expr)
		switch {
		case err != nil:
			add(query.Where, expr, "query %s failed: %v", query.RefID, err)
			continue
		case n == 0:
			add(query.Where, expr, "query %s returned no data", query.RefID)
		}
		parsed, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
		if err != nil {
			continue // the API parsed it; a parser mismatch is not the dashboard's problem
		}
		seen := map[string]bool{}
		for _, vs := range selectors(parsed) {
			sel := vs.String()
			if seen[sel] {
				continue
			}
			seen[sel] = true
			if n, err := run("count(" + sel + ")"); err == nil && n == 0 {
				add(query.Where, expr, "selector %s selects no series", sel)
			}
		}
	}
	return problems, nil
}

func lookup(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) { v, ok := m[name]; return v, ok }
}

// variableValue is the value a freshly opened dashboard gives v: the All
// value when it has one, all values as a regex alternation for multi-value
// and All variables, else the first.
func variableValue(v Variable, values []string) string {
	sort.Strings(values)
	switch {
	case v.IncludeAll && v.AllValue != "":
		return v.AllValue
	case len(values) == 0:
		return ""
	case v.Multi || v.IncludeAll:
		quoted := make([]string, len(values))
		for i, s := range values {
			// Regex-escaped, then escaped again for the PromQL string literal, as Grafana does.
			quoted[i] = strings.ReplaceAll(regexp.QuoteMeta(s), `\`, `\\`)
		}
		return "(" + strings.Join(quoted, "|") + ")"
	default:
		return values[0]
	}
}

// stepFor is Grafana's $__interval: about 200 points over the range, never
// under the panel's minimum interval (or the data source's scrape interval).
func stepFor(panelInterval string, opts CheckOptions) time.Duration {
	minStep := opts.ScrapeInterval
	if d, err := model.ParseDuration(panelInterval); err == nil && panelInterval != "" {
		minStep = time.Duration(d)
	}
	return max(opts.Range/200, minStep, time.Second).Round(time.Second)
}
