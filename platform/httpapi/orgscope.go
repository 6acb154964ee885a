package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/gale-iot/gale/platform/ingest"
)

// errNoCaller refuses a read of the TSDB whose context carries no caller:
// the query API reads only on behalf of an authenticated principal.
var errNoCaller = errors.New("no authenticated caller in the query's context")

// orgMatcher is the matcher that confines the caller in ctx to its org's
// series: nil for a cluster account (all orgs), an error without a caller.
func orgMatcher(ctx context.Context) (*labels.Matcher, error) {
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return nil, errNoCaller
	}
	if p.AllOrgs() {
		return nil, nil
	}
	return labels.MustNewMatcher(labels.MatchEqual, ingest.LabelOrg, p.Org), nil
}

// orgQueryable is the TSDB as the Prometheus API reads it: every Select,
// LabelNames and LabelValues gets the matcher org="<the caller's org>" of
// the principal in its context, so no PromQL function, regex, subquery or
// series, label or exemplar endpoint reaches another org's series (nor a
// series without an org label). A cluster account reads everything.
type orgQueryable struct{ Storage }

func (q orgQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	inner, err := q.Storage.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return orgQuerier{inner}, nil
}

func (orgQueryable) ChunkQuerier(int64, int64) (storage.ChunkQuerier, error) {
	return nil, errors.New("chunk queries (remote read) are not served")
}

func (q orgQueryable) ExemplarQuerier(ctx context.Context) (storage.ExemplarQuerier, error) {
	m, err := orgMatcher(ctx)
	if err != nil {
		return nil, err
	}
	inner, err := q.Storage.ExemplarQuerier(ctx)
	if err != nil || m == nil {
		return inner, err
	}
	return orgExemplars{inner, m}, nil
}

type orgQuerier struct{ storage.Querier }

func (q orgQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	m, err := orgMatcher(ctx)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	return q.Querier.Select(ctx, sortSeries, hints, withMatcher(ms, m)...)
}

func (q orgQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	m, err := orgMatcher(ctx)
	if err != nil {
		return nil, nil, err
	}
	return q.Querier.LabelValues(ctx, name, hints, withMatcher(ms, m)...)
}

func (q orgQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	m, err := orgMatcher(ctx)
	if err != nil {
		return nil, nil, err
	}
	return q.Querier.LabelNames(ctx, hints, withMatcher(ms, m)...)
}

type orgExemplars struct {
	storage.ExemplarQuerier
	org *labels.Matcher
}

func (q orgExemplars) Select(start, end int64, sets ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	for i, ms := range sets {
		sets[i] = withMatcher(ms, q.org)
	}
	return q.ExemplarQuerier.Select(start, end, sets...)
}

// withMatcher is ms and m (ms when m is nil), without changing ms's array.
func withMatcher(ms []*labels.Matcher, m *labels.Matcher) []*labels.Matcher {
	if m == nil {
		return ms
	}
	return append(ms[:len(ms):len(ms)], m)
}

// orgRules serves Prometheus's rules and alerts endpoints to a caller with
// an org: only the alerting rules whose own labels carry its org (so do all
// of their alerts, and all the series a recording rule with that label
// writes), and the rule groups only to a request that confineRules
// confined to them. Rules without an org label are the cluster's: their
// alerts reach an org through orgAlerts, the ALERTS series and /api/v1/alerts.
type orgRules struct {
	v1.RulesRetriever
	org      string
	confined bool
}

func (r orgRules) RuleGroups() []*promrules.Group {
	if !r.confined {
		return nil
	}
	return r.RulesRetriever.RuleGroups()
}

func (r orgRules) AlertingRules() []*promrules.AlertingRule {
	var out []*promrules.AlertingRule
	for _, a := range r.RulesRetriever.AlertingRules() {
		if a.Labels().Get(ingest.LabelOrg) == r.org {
			out = append(out, a)
		}
	}
	return out
}

// rulesFor is the rules retriever of the caller in ctx: all rules for a
// cluster account, orgRules for a caller with an org (none without a caller).
func rulesFor(all v1.RulesRetriever) func(context.Context) v1.RulesRetriever {
	return func(ctx context.Context) v1.RulesRetriever {
		p, ok := PrincipalFrom(ctx)
		switch {
		case !ok || all == nil:
			return noRules{}
		case p.AllOrgs():
			return all
		}
		_, confined := ctx.Value(rulesConfinedKey{}).(bool)
		return orgRules{all, p.Org, confined}
	}
}

// rulesConfinedKey marks a request whose rule matchers confineRules confined to the caller's org.
type rulesConfinedKey struct{}

// orgAlerts answers /alerts to a caller with an org: the active alerts of
// every alerting rule whose labels carry its org, in Prometheus's format.
func orgAlerts(all v1.RulesRetriever, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, err := orgMatcher(r.Context())
		if err != nil || m == nil || all == nil {
			next.ServeHTTP(w, r)
			return
		}
		out := []*v1.Alert{}
		for _, rule := range all.AlertingRules() {
			for _, a := range rule.ActiveAlerts() {
				if !m.Matches(a.Labels.Get(m.Name)) {
					continue
				}
				alert := &v1.Alert{Labels: a.Labels, Annotations: a.Annotations, State: a.State.String(), ActiveAt: &a.ActiveAt,
					Value: strconv.FormatFloat(a.Value, 'e', -1, 64)}
				if !a.KeepFiringSince.IsZero() {
					alert.KeepFiringSince = &a.KeepFiringSince
				}
				out = append(out, alert)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": v1.AlertDiscovery{Alerts: out}})
	})
}

type noRules struct{}

func (noRules) RuleGroups() []*promrules.Group           { return nil }
func (noRules) AlertingRules() []*promrules.AlertingRule { return nil }

// confineRules rewrites a /rules request of a caller with an org so that
// Prometheus lists only rules whose labels carry its org: the org matcher
// joins each of the caller's match[] selectors (or is the only one).
func confineRules(pp parser.Parser, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, err := orgMatcher(r.Context())
		if err != nil || m == nil {
			next.ServeHTTP(w, r)
			return
		}
		q := r.URL.Query()
		sels := q["match[]"]
		if len(sels) == 0 {
			sels = []string{"{}"}
		}
		confined := make([]string, 0, len(sels))
		for _, s := range sels {
			var ms []*labels.Matcher
			if s != "{}" {
				if ms, err = pp.ParseMetricSelector(s); err != nil {
					writePromError(w, http.StatusBadRequest, fmt.Errorf("match[] %q: %w", s, err))
					return
				}
			}
			confined = append(confined, selector(withMatcher(ms, m)))
		}
		q["match[]"] = confined
		r2 := r.Clone(context.WithValue(r.Context(), rulesConfinedKey{}, true))
		r2.URL.RawQuery, r2.Form = q.Encode(), nil
		next.ServeHTTP(w, r2)
	})
}

// selector writes ms as a PromQL series selector.
func selector(ms []*labels.Matcher) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ",") + "}"
}
