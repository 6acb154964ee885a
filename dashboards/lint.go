package dashboards

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Problem is something wrong with a dashboard.
type Problem struct {
	Dashboard string
	// Where names the panel, annotation or variable.
	Where string
	Expr  string
	Msg   string
}

func (p Problem) String() string {
	s := p.Dashboard + ": "
	if p.Where != "" {
		s += p.Where + ": "
	}
	s += p.Msg
	if p.Expr != "" {
		s += ": " + p.Expr
	}
	return s
}

// builtinVars are Grafana's global variables: always defined.
func builtinVars() map[string]string {
	// The value each stands for when a query is parsed by Lint.
	return map[string]string{
		"__interval": "1m", "__rate_interval": "1m", "__range": "1h",
		"__interval_ms": "60000", "__rate_interval_ms": "60000", "__range_s": "3600", "__range_ms": "3600000",
		"__from": "0", "__to": "0", "__dashboard": "x", "__org": "1", "__user": "x",
	}
}

// varRefs matches $var, ${var}, ${var:format} and [[var]].
func varRefs() *regexp.Regexp {
	return regexp.MustCompile(`\$(\w+)|\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]`)
}

// refName returns the variable name of a varRefs submatch.
func refName(m []string) string {
	for _, s := range m[1:] {
		if s != "" {
			return s
		}
	}
	return ""
}

// substitute replaces variable references in s with value(name); a name
// value does not know is left as is.
func substitute(s string, value func(name string) (string, bool)) string {
	re := varRefs()
	return re.ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := value(refName(re.FindStringSubmatch(ref))); ok {
			return v
		}
		return ref
	})
}

// labelValuesQuery splits a variable query label_values(selector, label)
// or label_values(label); ok is false for other queries.
func labelValuesQuery(q string) (selector, label string, ok bool) {
	inner, found := strings.CutPrefix(strings.TrimSpace(q), "label_values(")
	if !found || !strings.HasSuffix(inner, ")") {
		return "", "", false
	}
	inner = strings.TrimSuffix(inner, ")")
	if i := strings.LastIndex(inner, ","); i >= 0 {
		return strings.TrimSpace(inner[:i]), strings.TrimSpace(inner[i+1:]), true
	}
	return "", strings.TrimSpace(inner), true
}

// Lint checks a dashboard without a live Gale: that it has a uid and title,
// unique panel ids, panels on the Gale data source, PromQL queries that
// parse and name only metrics in known (see KnownMetrics), label_values
// variable queries, and template variables that are all defined, used, and
// defined before the variables whose queries use them.
func Lint(d *Dashboard, known map[string]bool) []Problem {
	l := linter{d: d, known: known, builtin: builtinVars(), defined: map[string]string{}, used: map[string]bool{}}
	l.run()
	return l.problems
}

type linter struct {
	d        *Dashboard
	known    map[string]bool
	builtin  map[string]string
	defined  map[string]string // user variable → the value queries are parsed with
	used     map[string]bool
	problems []Problem
}

func (l *linter) add(where, expr, format string, args ...any) {
	l.problems = append(l.problems, Problem{Dashboard: l.d.File, Where: where, Expr: expr, Msg: fmt.Sprintf(format, args...)})
}

func (l *linter) run() {
	d := l.d
	if d.UID == "" || len(d.UID) > 40 {
		l.add("", "", "uid %q must be 1 to 40 characters", d.UID)
	}
	if d.Title == "" {
		l.add("", "", "title is empty")
	}
	for _, v := range d.Templating.List {
		l.variable(v)
	}
	ids := map[int]bool{}
	for _, p := range d.AllPanels() {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID == 0 || ids[p.ID] {
			l.add(where, "", "panel id must be unique and non-zero")
		}
		ids[p.ID] = true
		l.refs(where, p.Title, p.Repeat)
		for _, t := range p.Targets {
			l.refs(where, t.LegendFormat)
			if !onGale(t.Datasource, p.Datasource) {
				l.add(where, t.Expr, "query %s is not on the data source uid %q", t.RefID, DatasourceUID)
			}
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			l.refs(fmt.Sprintf("annotation %q", a.Name), a.TitleFormat, a.TextFormat)
			if !onGale(a.Datasource, nil) {
				l.add(fmt.Sprintf("annotation %q", a.Name), a.Expr, "not on the data source uid %q", DatasourceUID)
			}
		}
	}
	for _, q := range d.Queries() {
		l.query(q.Where, q.Expr)
	}
	for _, v := range d.Templating.List {
		if !l.used[v.Name] {
			l.add("variable $"+v.Name, "", "defined but never used")
		}
	}
}

func onGale(refs ...*DatasourceRef) bool {
	for _, r := range refs {
		if r != nil {
			return r.UID == DatasourceUID
		}
	}
	return false
}

// refs marks the variables s references as used and reports undefined ones.
func (l *linter) refs(where string, ss ...string) {
	for _, s := range ss {
		for _, m := range varRefs().FindAllStringSubmatch(s, -1) {
			name := refName(m)
			if _, ok := l.builtin[name]; ok {
				continue
			}
			if _, ok := l.defined[name]; !ok {
				l.add(where, s, "variable $%s is not defined (or is defined after its use)", name)
				continue
			}
			l.used[name] = true
		}
	}
}

func (l *linter) value(name string) (string, bool) {
	if v, ok := l.builtin[name]; ok {
		return v, true
	}
	v, ok := l.defined[name]
	return v, ok
}

func (l *linter) variable(v Variable) {
	where := "variable $" + v.Name
	if v.Name == "" {
		l.add("variable", "", "variable without a name")
		return
	}
	if _, dup := l.defined[v.Name]; dup {
		l.add(where, "", "defined twice")
	}
	switch v.Type {
	case "query":
		// Checked before v is defined: a variable's query may use only earlier variables.
		q := v.QueryText()
		if !onGale(v.Datasource) {
			l.add(where, q, "not on the data source uid %q", DatasourceUID)
		}
		sel, label, ok := labelValuesQuery(q)
		switch {
		case !ok:
			l.refs(where, q)
			l.add(where, q, "want a label_values(selector, label) query")
		case !isLabelName(label):
			l.add(where, q, "label %q is not a label name", label)
		case sel != "":
			l.query(where, sel)
		}
		l.defined[v.Name] = "x"
	case "interval":
		l.defined[v.Name] = "1m"
	default:
		l.defined[v.Name] = "x"
	}
}

// query parses expr with variables substituted and checks its metric names.
func (l *linter) query(where, expr string) {
	if strings.TrimSpace(expr) == "" {
		l.add(where, "", "empty query")
		return
	}
	l.refs(where, expr)
	e, err := parser.NewParser(parser.Options{}).ParseExpr(substitute(expr, l.value))
	if err != nil {
		l.add(where, expr, "does not parse: %v", err)
		return
	}
	for _, vs := range selectors(e) {
		if msg := l.nameProblem(vs.LabelMatchers); msg != "" {
			l.add(where, expr, "%s", msg)
		}
	}
}

// nameProblem checks a selector's metric name against known.
func (l *linter) nameProblem(ms []*labels.Matcher) string {
	for _, m := range ms {
		if m.Name != labels.MetricName {
			continue
		}
		if m.Type == labels.MatchEqual {
			if !l.known[m.Value] {
				return fmt.Sprintf("metric %s is not exported by Gale", m.Value)
			}
			return ""
		}
		for n := range l.known {
			if m.Matches(n) {
				return ""
			}
		}
		return fmt.Sprintf("metric name matcher %s matches no metric Gale exports", m)
	}
	return "selector without a metric name"
}

// selectors returns the vector selectors of e, those inside range selectors included.
func selectors(e parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// isLabelName reports whether s is a (legacy, ASCII) Prometheus label name.
func isLabelName(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}
