package rules

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/gale-iot/gale/platform/ingest"
)

// ruleLoader is the rule manager's GroupLoader: Prometheus's own rule-file
// parsing (rulefmt, with the engine's parser) plus the engine's checks on
// every expression, so a rule is refused at load for whatever the engine
// would refuse when evaluating it, and the error names the file and line.
type ruleLoader struct {
	engine QueryEngine
	log    *slog.Logger
}

// Load reads and validates one rule file.
func (l ruleLoader) Load(file string, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	name := filepath.Join(PromQLDir, filepath.Base(file))
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: read rule file: %w", name, err)}
	}
	return l.parse(name, b, ignoreUnknownFields, scheme)
}

// Parse parses a rule's expression (already checked by Load).
func (l ruleLoader) Parse(query string) (parser.Expr, error) {
	return l.engine.Parser().ParseExpr(query)
}

func (l ruleLoader) parse(name string, b []byte, ignoreUnknownFields bool, scheme model.ValidationScheme) (*rulefmt.RuleGroups, []error) {
	rgs, errs := rulefmt.Parse(b, ignoreUnknownFields, scheme, l.engine.Parser(), l.log)
	if len(errs) > 0 {
		for i, err := range errs {
			errs[i] = located(name, err)
		}
		return nil, errs
	}
	// rulefmt.Parse has decoded the same bytes: this only adds the line numbers.
	var nodes struct {
		Groups []rulefmt.RuleGroupNode `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &nodes); err != nil {
		return nil, []error{located(name, err)}
	}
	for gi, g := range rgs.Groups {
		for ri := range g.Rules {
			r := &g.Rules[ri]
			err := l.engine.CheckExpr(r.Expr)
			if err == nil {
				r.Expr, err = l.confine(r.Expr, ruleOrg(g, *r))
			}
			if err != nil {
				line := 0
				if gi < len(nodes.Groups) && ri < len(nodes.Groups[gi].Rules) {
					line = nodes.Groups[gi].Rules[ri].Expr.Line
				}
				errs = append(errs, fmt.Errorf("%w: %s:%d: group %q, rule %q: %w", ErrInvalid, name, line, g.Name, r.Alert+r.Record, err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rgs, nil
}

// ruleOrg is the org that owns rule r of group g: its org label, or its
// group's (which Prometheus gives every rule of the group); "" for a
// cluster rule.
func ruleOrg(g rulefmt.RuleGroup, r rulefmt.Rule) string {
	if org, ok := r.Labels[ingest.LabelOrg]; ok {
		return org
	}
	return g.Labels[ingest.LabelOrg]
}

// confine rewrites the expression of a rule of org so that it reads that
// org's series only, as the query API confines an org's queries: every
// series selector (in functions, subqueries, binary operations alike) gets
// the matcher org="<org>" beside its own. A rule of the cluster (org "") is
// left as it is.
func (l ruleLoader) confine(expr, org string) (string, error) {
	if org == "" {
		return expr, nil
	}
	e, err := l.engine.Parser().ParseExpr(expr)
	if err != nil {
		return "", err
	}
	m, err := labels.NewMatcher(labels.MatchEqual, ingest.LabelOrg, org)
	if err != nil {
		return "", err
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vs.LabelMatchers = append(vs.LabelMatchers, m)
		}
		return nil
	})
	return e.String(), nil
}

var (
	lineColumn = regexp.MustCompile(`^\d+:\d+: `)
	yamlLine   = regexp.MustCompile(`line (\d+): `)
)

// located prefixes err with the file and, where the message has one, its
// line: rulefmt says "12:7: group ...", yaml says "yaml: line 12: ...".
func located(name string, err error) error {
	msg := err.Error()
	switch {
	case lineColumn.MatchString(msg):
		return fmt.Errorf("%w: %s:%w", ErrInvalid, name, err)
	case yamlLine.MatchString(msg):
		return fmt.Errorf("%w: %s:%s: %w", ErrInvalid, name, yamlLine.FindStringSubmatch(msg)[1], err)
	}
	return fmt.Errorf("%w: %s: %w", ErrInvalid, name, err)
}

// newRefusedGauge counts the rule files of kind refused at the last load.
func newRefusedGauge(kind string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gale_rule_files_refused", Help: "Rule files refused at the last load (start or reload), by kind; the node runs without them.",
		ConstLabels: prometheus.Labels{"kind": kind},
	})
}

// registerAll registers cs on reg.
func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register rule metrics: %w", err)
		}
	}
	return nil
}
