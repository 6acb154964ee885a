package rules

import (
	"errors"

	promrules "github.com/prometheus/prometheus/rules"

	"github.com/gale-iot/gale/platform/api"
)

// Set is the node's streaming and PromQL rules seen as one, for the API and reloads.
type Set struct {
	Stream *Service
	PromQL *PromQLRules
	Routes *Router
}

// Rules lists every loaded rule. A cluster node has the kinds of its role: any member may be nil.
func (s Set) Rules() []RuleInfo {
	out := []RuleInfo{}
	if s.Stream != nil {
		out = s.Stream.Rules()
	}
	if s.PromQL == nil {
		return out
	}
	for _, g := range s.PromQL.RuleGroups() {
		for _, r := range g.Rules() {
			info := RuleInfo{Name: r.Name(), Type: "promql-recording", Location: g.File(), Expr: r.Query().String(), Org: r.Labels().Get("org")}
			if a, ok := r.(*promrules.AlertingRule); ok {
				info.Type, info.Severity = "promql-alerting", a.Labels().Get("severity")
				if d := a.HoldDuration(); d > 0 {
					info.For = d.String()
				}
			}
			out = append(out, info)
		}
	}
	return out
}

// ListRoutes lists every loaded route (none on a node without the router).
func (s Set) ListRoutes() []RouteInfo {
	out := []RouteInfo{}
	if s.Routes == nil {
		return out
	}
	for _, r := range s.Routes.Routes() {
		out = append(out, r.Info())
	}
	return out
}

// Reload reloads streaming rules, PromQL rules and routes; an invalid file leaves that kind as it was.
func (s Set) Reload() error {
	var errs []error
	if s.Stream != nil {
		errs = append(errs, s.Stream.Reload(), s.Routes.Reload())
	}
	if s.PromQL != nil {
		errs = append(errs, s.PromQL.Reload())
	}
	return errors.Join(errs...)
}

// Pending lists alerts of both kinds whose for-duration is running.
func (s Set) Pending() []api.Alert {
	out := []api.Alert{}
	if s.Stream != nil {
		out = s.Stream.Pending()
	}
	if s.PromQL == nil {
		return out
	}
	for _, r := range s.PromQL.AlertingRules() {
		for _, a := range r.ActiveAlerts() {
			if a.State == promrules.StatePending {
				out = append(out, api.Alert{Rule: r.Name(), Severity: a.Labels.Get("severity"), Source: "promql",
					Key: a.Labels.DropMetricName().String(), Device: deviceOf(a.Labels), Site: a.Labels.Get("site"),
					Org: a.Labels.Get("org"), State: api.AlertPending, Value: a.Value, StartedAt: a.ActiveAt.UnixMilli()})
			}
		}
	}
	return out
}
