package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/rules"
)

func (s *Server) routeAlerts(mux *http.ServeMux) {
	s.handle(mux, "GET /api/v1/alerts", s.listAlerts)
	s.handle(mux, "POST /api/v1/alerts/{id}/ack", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "alert id must be a number")
			return
		}
		var body struct {
			Comment string `json:"comment"`
			User    string `json:"user"`
		}
		if !decodeJSON(w, r, &body) {
			return
		}
		// The acknowledgement is the caller's; only an admin records one for another user.
		p := principal(r)
		switch {
		case body.User == "":
			body.User = p.Name
		case body.User != p.Name && !p.Has(api.RoleAdmin):
			writeError(w, http.StatusForbidden, "only an admin acknowledges for another user; leave user out")
			return
		}
		// Another org's alert is answered as a missing one.
		if a, err := s.deps.Registry.Alert(r.Context(), id); err != nil || !p.InOrg(a.Org) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("alert %d not found", id))
			return
		}
		a, err := s.deps.Registry.AckAlert(r.Context(), id, body.User, body.Comment)
		if err != nil {
			writeRegistryError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	})
	s.handle(mux, "GET /api/v1/rules", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, inCallersOrgs(r, s.deps.Rules.Rules(), s.ruleOrg, false))
	})
	s.handle(mux, "GET /api/v1/routes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, inCallersOrgs(r, s.deps.Rules.ListRoutes(), func(rt rules.RouteInfo) string { return rt.Org }, false))
	})
	s.handle(mux, "POST /api/v1/rules/validate", s.validateRules)
	s.handle(mux, "POST /api/v1/rules/reload", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.deps.Rules.Reload(); err != nil {
			writeError(w, http.StatusBadRequest, "rules not reloaded, the previous rules stay: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, s.deps.Rules.Rules())
	})
}

// validateRules answers POST /api/v1/rules/validate?kind=stream|promql|routes
// with the rules or routes the file in the body defines and their orgs, as a
// reload would load them (400 with file:line for a bad one). A caller of an
// org validates files of its org's only: each rule or route names its org
// (or its file does).
func (s *Server) validateRules(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		writeBodyError(w, err)
		return
	}
	owned, err := s.deps.Rules.Validate(r.URL.Query().Get("kind"), b)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid: "+err.Error())
		return
	}
	if p := principal(r); !p.AllOrgs() {
		for _, o := range owned {
			if o.Org != p.Org {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not of org %s: a file of an org says org: %s (%s %q validates its org's rules only)",
					o.Name, p.Org, p.Org, p.Kind, p.Name))
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, owned)
}

// listAlerts answers /api/v1/alerts?state=&severity=&site=&rule=&source=&since=&until=&limit=.
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := principal(r)
	f := registry.AlertFilter{Org: p.Org, State: q.Get("state"), Severity: q.Get("severity"), Site: q.Get("site"), Rule: q.Get("rule"), Source: q.Get("source")}
	switch f.State {
	case "", api.AlertFiring, api.AlertResolved, api.AlertPending:
	default:
		writeError(w, http.StatusBadRequest, "state must be pending, firing or resolved")
		return
	}
	for name, dst := range map[string]*int64{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := parseTime(v, time.Time{})
			if err != nil {
				writeError(w, http.StatusBadRequest, name+": "+err.Error())
				return
			}
			*dst = t.UnixMilli()
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a positive number")
			return
		}
		f.Limit = n
	}
	if f.State == api.AlertPending {
		out := []api.Alert{}
		for _, a := range s.deps.Rules.Pending() {
			if p.InOrg(a.Org) && (f.Severity == "" || a.Severity == f.Severity) && (f.Site == "" || a.Site == f.Site) && (f.Rule == "" || a.Rule == f.Rule) {
				out = append(out, a)
			}
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	alerts, err := s.deps.Registry.Alerts(r.Context(), f)
	if err != nil {
		writeRegistryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, alerts)
}

// ruleOrg is the one org a rule is confined to, "" for a rule of several
// orgs or of the whole fleet (listed to cluster accounts only): a PromQL
// rule's org label; a streaming rule's asset's org, or its devices' org.
func (s *Server) ruleOrg(ri rules.RuleInfo) string {
	if ri.Org != "" || ri.Scope.Asset == "" && len(ri.Scope.Devices) == 0 {
		return ri.Org
	}
	if ri.Scope.Asset != "" {
		a, _ := s.deps.Registry.Asset(ri.Scope.Asset)
		return a.Org
	}
	org := ""
	for i, key := range ri.Scope.Devices {
		pk, dk, _ := strings.Cut(key, "/")
		d, ok := s.deps.Registry.Device(pk, dk)
		if !ok || i > 0 && d.Org != org {
			return ""
		}
		org = d.Org
	}
	return org
}
