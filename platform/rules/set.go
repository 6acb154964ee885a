package rules

import (
	"errors"
	"fmt"

	"github.com/prometheus/common/model"
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

// Kinds of rule files Validate checks.
const (
	KindStream = "stream"
	KindPromQL = "promql"
	KindRoutes = "routes"
)

// Owned is a rule or route of a file and the org that owns it ("" for the cluster).
type Owned struct {
	Name     string `json:"name"`
	Org      string `json:"org,omitempty"`
	Location string `json:"location,omitempty"`
}

// Validate checks the content of a rule file of kind (stream, promql or
// routes) as a reload would load it, without loading it, and lists what
// it defines with the orgs that would own them.
func (s Set) Validate(kind string, b []byte) ([]Owned, error) {
	out := []Owned{}
	switch kind {
	case KindStream:
		rules, err := Parse("rules.yaml", b)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			out = append(out, Owned{Name: r.Name, Org: r.Org, Location: r.Location()})
		}
	case KindRoutes:
		routes, err := ParseRoutes("routes.yaml", b)
		if err != nil {
			return nil, err
		}
		for _, r := range routes {
			out = append(out, Owned{Name: r.Name, Org: r.Org, Location: r.Info().Location})
		}
	case KindPromQL:
		if s.PromQL == nil {
			return nil, fmt.Errorf("%w: this node runs no PromQL rules to check them with", ErrInvalid)
		}
		rgs, errs := s.PromQL.loader.parse(PromQLDir+"/rules.yml", b, false, model.UTF8Validation)
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		for _, g := range rgs.Groups {
			for _, r := range g.Rules {
				out = append(out, Owned{Name: r.Alert + r.Record, Org: ruleOrg(g, r), Location: g.Name})
			}
		}
	default:
		return nil, fmt.Errorf("%w: kind %q, want stream, promql or routes", ErrInvalid, kind)
	}
	return out, nil
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
