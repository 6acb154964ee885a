package tsdb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// QueryConfig limits every PromQL query a node runs: the Prometheus-compatible
// API, the REST history endpoint and PromQL rules.
type QueryConfig struct {
	// Timeout cuts a query off (Prometheus's --query.timeout).
	Timeout time.Duration `yaml:"timeout"`
	// MaxSamples is how many samples one query may hold in memory at once
	// (Prometheus's --query.max-samples).
	MaxSamples int `yaml:"maxSamples"`
	// MaxConcurrent is how many queries run at once (Prometheus's --query.max-concurrency).
	MaxConcurrent int `yaml:"maxConcurrent"`
	// MaxQueueWait is how long a query waits for a free slot before it is refused.
	MaxQueueWait time.Duration `yaml:"maxQueueWait"`
	// MaxPoints bounds the points per series of a range query (its steps, as
	// Prometheus's API does with 11,000) and of every subquery (range / step).
	MaxPoints int `yaml:"maxPoints"`
	// DefaultSubqueryStep is the step of a subquery written without one (x[5m:]),
	// Prometheus's global evaluation_interval.
	DefaultSubqueryStep time.Duration `yaml:"defaultSubqueryStep"`
}

// DefaultConfig's query limits.
const (
	DefaultQueryTimeout = 30 * time.Second
	// DefaultMaxPoints is the resolution Prometheus's API allows a range query.
	DefaultMaxPoints = 11000
)

// DefaultQueryConfig returns limits sized for a node that must keep serving
// its devices and the edge while someone runs an expensive query.
func DefaultQueryConfig() QueryConfig {
	return QueryConfig{
		Timeout:             DefaultQueryTimeout,
		MaxSamples:          10_000_000,
		MaxConcurrent:       8,
		MaxQueueWait:        5 * time.Second,
		MaxPoints:           DefaultMaxPoints,
		DefaultSubqueryStep: time.Minute,
	}
}

// Validate checks c.
func (c QueryConfig) Validate() error {
	switch {
	case c.Timeout <= 0:
		return fmt.Errorf("%w: query.timeout must be positive", ErrConfig)
	case c.MaxSamples <= 0:
		return fmt.Errorf("%w: query.maxSamples must be positive", ErrConfig)
	case c.MaxConcurrent <= 0:
		return fmt.Errorf("%w: query.maxConcurrent must be positive", ErrConfig)
	case c.MaxQueueWait <= 0 || c.MaxQueueWait > c.Timeout:
		return fmt.Errorf("%w: query.maxQueueWait must be positive and at most query.timeout", ErrConfig)
	case c.MaxPoints <= 0:
		return fmt.Errorf("%w: query.maxPoints must be positive", ErrConfig)
	case c.DefaultSubqueryStep <= 0:
		return fmt.Errorf("%w: query.defaultSubqueryStep must be positive", ErrConfig)
	}
	return nil
}

// withDefaults fills zero fields from DefaultQueryConfig.
func (c QueryConfig) withDefaults() QueryConfig {
	d := DefaultQueryConfig()
	c.Timeout = cmp.Or(c.Timeout, d.Timeout)
	c.MaxSamples = cmp.Or(c.MaxSamples, d.MaxSamples)
	c.MaxConcurrent = cmp.Or(c.MaxConcurrent, d.MaxConcurrent)
	c.MaxQueueWait = cmp.Or(c.MaxQueueWait, min(d.MaxQueueWait, c.Timeout))
	c.MaxPoints = cmp.Or(c.MaxPoints, d.MaxPoints)
	c.DefaultSubqueryStep = cmp.Or(c.DefaultSubqueryStep, d.DefaultSubqueryStep)
	return c
}

var (
	// ErrQueryRefused is wrapped by every refusal of a query for what it asks
	// (too many points per series) before it runs: the caller's mistake (4xx).
	ErrQueryRefused = errors.New("query refused")
	// ErrQueryQueueFull means every query slot stayed busy for MaxQueueWait: try again later (503).
	ErrQueryQueueFull = errors.New("too many concurrent queries")
)

// Refusal reasons, the values of gale_query_refused_total's reason label.
const (
	ReasonTooManyPoints   = "too_many_points"
	ReasonSubqueryPoints  = "subquery_points"
	ReasonQueueFull       = "queue_full"
	ReasonTimeout         = "timeout"
	ReasonTooManySamples  = "too_many_samples"
	ReasonEvaluationPanic = "evaluation_panic"
)

// Engine is Prometheus's PromQL engine with Gale's limits: Prometheus's own
// timeout, sample limit and active query tracker (its concurrency cap, whose
// wait Engine bounds), plus a bound on points per series that Prometheus's
// API applies only to range queries and not at all to subqueries or rules.
// Every query path of a node goes through one Engine, so they share the limits.
type Engine struct {
	ng      *promql.Engine
	parser  parser.Parser
	cfg     QueryConfig
	refused *prometheus.CounterVec
}

var _ promql.QueryEngine = (*Engine)(nil)

// NewEngine returns the engine; dir holds Prometheus's active query log
// (queries.active), whose unfinished queries are logged at the next start.
// Zero fields of cfg take DefaultQueryConfig's values.
func NewEngine(cfg QueryConfig, dir string, log *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tracker, err := promql.NewActiveQueryTracker(dir, cfg.MaxConcurrent, log.With("component", "activequerytracker"))
	if err != nil {
		return nil, fmt.Errorf("query tracker in %q: %w", dir, err)
	}
	p := parser.NewParser(parser.Options{})
	defaultStep := cfg.DefaultSubqueryStep.Milliseconds()
	e := &Engine{
		parser: p,
		cfg:    cfg,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_query_refused_total",
			Help: "PromQL queries refused or cut off by a limit, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonTooManyPoints, ReasonSubqueryPoints, ReasonQueueFull, ReasonTimeout, ReasonTooManySamples, ReasonEvaluationPanic} {
		e.refused.WithLabelValues(r)
	}
	if err := reg.Register(e.refused); err != nil {
		_ = tracker.Close()
		return nil, fmt.Errorf("register query metrics: %w", err)
	}
	e.ng = promql.NewEngine(promql.EngineOpts{
		Logger:             log.With("component", "promql"),
		Reg:                reg,
		MaxSamples:         cfg.MaxSamples,
		Timeout:            cfg.Timeout,
		ActiveQueryTracker: boundedTracker{tracker, cfg.MaxQueueWait},
		LookbackDelta:      5 * time.Minute,
		// Without it a subquery without a step (x[5m:]) dereferences a nil
		// function before evaluation, outside the engine's recover: a panic
		// that any token holder or rule file could trigger.
		NoStepSubqueryIntervalFn: func(int64) int64 { return defaultStep },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   p,
	})
	return e, nil
}

// Parser is the PromQL parser every query and rule file is parsed with.
func (e *Engine) Parser() parser.Parser { return e.parser }

// Config returns the limits in force.
func (e *Engine) Config() QueryConfig { return e.cfg }

// Close releases the active query log.
func (e *Engine) Close() error { return e.ng.Close() }

// NewInstantQuery checks qs against the limits and returns Prometheus's query.
func (e *Engine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	if err := e.check(qs, ts, ts, 0); err != nil {
		return nil, err
	}
	qry, err := e.ng.NewInstantQuery(ctx, q, opts, qs, ts)
	if err != nil {
		return nil, e.count(err)
	}
	return countedQuery{qry, e}, nil
}

// NewRangeQuery checks qs and its resolution against the limits and returns Prometheus's query.
func (e *Engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, step time.Duration) (promql.Query, error) {
	if err := e.check(qs, start, end, step); err != nil {
		return nil, err
	}
	qry, err := e.ng.NewRangeQuery(ctx, q, opts, qs, start, end, step)
	if err != nil {
		return nil, e.count(err)
	}
	return countedQuery{qry, e}, nil
}

// AcquireQuerySlot takes one of the engine's query slots for work outside
// the engine (series, label and raw sample reads), waiting at most MaxQueueWait.
func (e *Engine) AcquireQuerySlot(ctx context.Context, qs string) (func(), error) {
	release, err := e.ng.AcquireQuerySlot(ctx, qs)
	return release, e.count(err)
}

// CheckExpr parses expr as the engine does and refuses what the limits would
// refuse when it is evaluated as an instant query (a rule's expression).
func (e *Engine) CheckExpr(expr string) error {
	parsed, err := e.parser.ParseExpr(expr)
	if err != nil {
		return err
	}
	now := time.Now()
	if parsed, err = promql.PreprocessExpr(parsed, now, now, 0); err != nil {
		return err
	}
	return e.count(e.checkSubqueries(parsed, 0))
}

// check refuses a query whose range has more than MaxPoints steps or whose
// subqueries would evaluate more than MaxPoints points per series. A query that
// does not parse is left to the engine, which reports it in its own words.
func (e *Engine) check(qs string, start, end time.Time, step time.Duration) error {
	var outer time.Duration
	if step > 0 {
		outer = end.Sub(start)
		if points := float64(outer)/float64(step) + 1; points > float64(e.cfg.MaxPoints) {
			return e.count(fmt.Errorf("%w: %.0f points per series, more than %d: use a larger step or a shorter range (%w)",
				ErrQueryRefused, points, e.cfg.MaxPoints, errTooManyPoints))
		}
	}
	expr, err := e.parser.ParseExpr(qs)
	if err != nil {
		return nil
	}
	if expr, err = promql.PreprocessExpr(expr, start, end, step); err != nil {
		return nil
	}
	return e.count(e.checkSubqueries(expr, outer))
}

var (
	errTooManyPoints  = errors.New(ReasonTooManyPoints)
	errSubqueryPoints = errors.New(ReasonSubqueryPoints)
)

// checkSubqueries refuses a subquery that evaluates more than MaxPoints steps
// per series. A subquery is evaluated over its parent's span plus its own
// range (or over its range alone when pinned with @), so nested subqueries
// add up. Prometheus has no such bound: it only counts samples in memory,
// while a subquery with a tiny step over empty data costs time without samples.
func (e *Engine) checkSubqueries(node parser.Node, span time.Duration) error {
	if sq, ok := node.(*parser.SubqueryExpr); ok {
		step := sq.Step
		if step <= 0 {
			step = e.cfg.DefaultSubqueryStep
		}
		if sq.Timestamp != nil || sq.StartOrEnd != 0 {
			span = 0
		}
		// In float64: a parent's span plus a range of centuries overflows time.Duration.
		points := (float64(span) + float64(sq.Range)) / float64(step)
		if points > float64(e.cfg.MaxPoints) {
			return fmt.Errorf("%w: subquery %s evaluates %.0f points per series, more than %d: use a larger step or a shorter range (%w)",
				ErrQueryRefused, sq, points, e.cfg.MaxPoints, errSubqueryPoints)
		}
		return e.checkSubqueries(sq.Expr, span+sq.Range)
	}
	for child := range parser.ChildrenIter(node) {
		if err := e.checkSubqueries(child, span); err != nil {
			return err
		}
	}
	return nil
}

// Refused counts a query refused for reason outside the engine (e.g. a rule whose evaluation panicked).
func (e *Engine) Refused(reason string) { e.refused.WithLabelValues(reason).Inc() }

// count counts err under its reason, when it is a limit's, and returns it.
func (e *Engine) count(err error) error {
	if reason := RefusalReason(err); reason != "" {
		e.refused.WithLabelValues(reason).Inc()
	}
	return err
}

// RefusalReason names the limit err comes from, or "" when it is not a limit's.
func RefusalReason(err error) string {
	var (
		timeout promql.ErrQueryTimeout
		samples promql.ErrTooManySamples
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, errTooManyPoints):
		return ReasonTooManyPoints
	case errors.Is(err, errSubqueryPoints):
		return ReasonSubqueryPoints
	case errors.Is(err, ErrQueryQueueFull):
		return ReasonQueueFull
	case errors.As(err, &timeout):
		return ReasonTimeout
	case errors.As(err, &samples):
		return ReasonTooManySamples
	}
	return ""
}

// countedQuery counts an execution cut off by a limit.
type countedQuery struct {
	promql.Query
	e *Engine
}

// Exec runs the query.
func (q countedQuery) Exec(ctx context.Context) *promql.Result {
	res := q.Query.Exec(ctx)
	_ = q.e.count(res.Err)
	return res
}

// boundedTracker is Prometheus's active query tracker with a bound on how
// long a query waits for a slot: Prometheus waits until the query's own
// timeout, which lets a flood of expensive queries hold every caller for minutes.
type boundedTracker struct {
	*promql.ActiveQueryTracker
	wait time.Duration
}

var errQueueWait = errors.New("query slot wait elapsed")

// Insert waits at most the bound for a slot.
func (t boundedTracker) Insert(ctx context.Context, query string) (int, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, t.wait, errQueueWait)
	defer cancel()
	i, err := t.ActiveQueryTracker.Insert(ctx, query)
	if err != nil && errors.Is(context.Cause(ctx), errQueueWait) {
		return 0, fmt.Errorf("%w: all %d query slots stayed busy for %s; try again later", ErrQueryQueueFull, t.GetMaxConcurrent(), t.wait)
	}
	return i, err
}
