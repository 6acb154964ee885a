package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// RouteRoles is the least role each authenticated route needs: viewers
// read; operators also run commands, acknowledge alerts and reload rules;
// admins also change the registry (products, devices, assets, tokens,
// users) and see device secrets. Every route the API registers must be
// here (registering one that is not panics), so no route is open by
// accident; docs/security.md carries the same table.
var RouteRoles = map[string]string{
	"GET /api/v1/products":             api.RoleViewer,
	"POST /api/v1/products":            api.RoleAdmin,
	"GET /api/v1/products/{pk}":        api.RoleViewer,
	"PUT /api/v1/products/{pk}":        api.RoleAdmin,
	"DELETE /api/v1/products/{pk}":     api.RoleAdmin,
	"GET /api/v1/devices":              api.RoleViewer,
	"POST /api/v1/devices":             api.RoleAdmin,
	"GET /api/v1/devices/{pk}/{dk}":    api.RoleViewer, // the secret only to an admin
	"PATCH /api/v1/devices/{pk}/{dk}":  api.RoleAdmin,
	"DELETE /api/v1/devices/{pk}/{dk}": api.RoleAdmin,
	"GET /api/v1/assets":               api.RoleViewer,
	"POST /api/v1/assets":              api.RoleAdmin,

	"GET /api/v1/devices/{pk}/{dk}/latest":                 api.RoleViewer,
	"GET /api/v1/assets/{id}/latest":                       api.RoleViewer,
	"GET /api/v1/devices/{pk}/{dk}/points/{point}/history": api.RoleViewer,
	"GET /api/v1/devices/{pk}/{dk}/events":                 api.RoleViewer, // its events as this node read them, newest first
	"/prometheus/":                                         api.RoleViewer, // reads only, POST queries included

	"GET /api/v1/alerts":           api.RoleViewer,
	"POST /api/v1/alerts/{id}/ack": api.RoleOperator,
	"GET /api/v1/rules":            api.RoleViewer,   // an org's own rules, and cluster rules scoped to its assets or devices
	"GET /api/v1/routes":           api.RoleViewer,   // an org's own routes
	"POST /api/v1/rules/validate":  api.RoleOperator, // a rule file of the caller's org, checked, not loaded
	"POST /api/v1/rules/reload":    api.RoleOperator,

	"POST /api/v1/devices/{pk}/{dk}/services/{service}": api.RoleOperator,
	"GET /api/v1/commands/{id}":                         api.RoleViewer,

	"GET /api/v1/tokens":          api.RoleAdmin,
	"POST /api/v1/tokens":         api.RoleAdmin,
	"DELETE /api/v1/tokens/{id}":  api.RoleAdmin,
	"GET /api/v1/users":           api.RoleAdmin,
	"POST /api/v1/users":          api.RoleAdmin,
	"DELETE /api/v1/users/{name}": api.RoleAdmin,
	// A user's own password (its session, with the current password), or an admin of its org for it.
	"POST /api/v1/users/{name}/password": api.RoleViewer,
	"GET /api/v1/audit":                  api.RoleAdmin,

	"GET /api/v1/me":     api.RoleViewer, // the caller's own name, org and role (the console's sign-in)
	"GET /api/v1/stream": api.RoleViewer, // live latest values and firing alerts of the caller's orgs (server-sent events)

	"POST /api/v1/devices/{pk}/{dk}/secret": api.RoleAdmin, // a new secret, shown once; the old one's session dropped
	"GET /api/v1/runs":                      api.RoleViewer,
	"GET /api/v1/runs/{run}":                api.RoleViewer,
	"POST /api/v1/runs":                     api.RoleOperator, // loadgen and scenario reports (the console's runs page)
	"POST /api/v1/product-yaml":             api.RoleAdmin,    // a product YAML document checked and answered as JSON (stores nothing)
}

// ClusterRoutes need, besides their role, a cluster account (one of all
// orgs): they change what every org shares, the rule and route files.
// Every other route confines its reads and changes to the caller's org
// (another org's objects answer 404); products are an org's own or of the
// public library, which orgs read and only cluster accounts change.
var ClusterRoutes = map[string]bool{
	"POST /api/v1/rules/reload": true,
}

// PublicRoutes are served without a token (the web console's page and
// assets hold no data; its every API call carries the user's token).
var PublicRoutes = []string{"POST /api/v1/login", "GET /metrics", "GET /healthz", "GET /readyz", "GET /", "GET /console/app.js"}

// Route is a registered route and the least role it needs.
type Route struct {
	Pattern string
	Role    string
	// Cluster is set for a route that needs a cluster account (all orgs).
	Cluster bool
}

// Routes returns the authenticated routes this server registered, with
// their roles (the handlers of Deps.Extra under the role of each method).
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// handle registers h at pattern behind the role RouteRoles gives it.
func (s *Server) handle(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	role, ok := RouteRoles[pattern]
	if !ok {
		panic("httpapi: route " + pattern + " has no role in RouteRoles")
	}
	s.routes = append(s.routes, Route{Pattern: pattern, Role: role, Cluster: ClusterRoutes[pattern]})
	mux.Handle(pattern, authorize(func(*http.Request) string { return role }, ClusterRoutes[pattern], h))
}

// extraRole is the role a handler of Deps.Extra (the twin control API)
// needs: a viewer reads, an operator changes (injects faults, sets the clock).
func extraRole(r *http.Request) string {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return api.RoleViewer
	}
	return api.RoleOperator
}

// handleExtra registers a handler of Deps.Extra behind extraRole, for
// cluster accounts only: the twins it controls are not an org's.
func (s *Server) handleExtra(mux *http.ServeMux, pattern string, h http.Handler) {
	s.routes = append(s.routes, Route{Pattern: pattern, Role: "GET " + api.RoleViewer + ", else " + api.RoleOperator, Cluster: true})
	mux.Handle(pattern, authorize(extraRole, true, h.ServeHTTP))
}

// authorize answers 403 unless the caller's role is at least role(r) and,
// for a cluster route, the caller is of all orgs.
func authorize(role func(*http.Request) string, cluster bool, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		need := role(r)
		if !ok {
			writeError(w, http.StatusUnauthorized, "not authenticated")
			return
		}
		if !p.Has(need) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s %s needs role %s or above; %s %q has role %s",
				r.Method, r.URL.Path, need, p.Kind, p.Name, p.Role))
			return
		}
		if cluster && !p.AllOrgs() {
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s %s acts for every org and needs a cluster account; %s %q is of org %s",
				r.Method, r.URL.Path, p.Kind, p.Name, p.Org))
			return
		}
		h(w, r)
	})
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p registry.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller that authenticate put in ctx.
func PrincipalFrom(ctx context.Context) (registry.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(registry.Principal)
	return p, ok
}

// authenticate resolves the bearer token to its principal, put in the
// request's context; 401 with a reason for a missing, unknown, expired or
// revoked token.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gale"`)
			s.refused.add(r, auditBadToken, "no token", "", "", http.StatusUnauthorized)
			writeError(w, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer TOKEN (the admin token is in DATA/admin.token; users get one from POST /api/v1/login)")
			return
		}
		p, err := s.deps.Registry.Authenticate(token)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gale", error="invalid_token"`)
			msg, reason := "invalid token", "unknown token"
			switch {
			case errors.Is(err, registry.ErrTokenExpired):
				msg, reason = "token expired: get a new one (POST /api/v1/login, or from an admin)", "expired token"
			case errors.Is(err, registry.ErrTokenRevoked):
				msg, reason = "token revoked", "revoked token"
			}
			s.refused.add(r, auditBadToken, reason, "", "", http.StatusUnauthorized)
			writeError(w, http.StatusUnauthorized, msg)
			return
		}
		r2 := r.WithContext(WithPrincipal(r.Context(), p))
		// guard counts answers by the pattern the inner mux sets on r2, even on a panic.
		defer func() { r.Pattern = r2.Pattern }()
		next.ServeHTTP(w, r2)
	})
}

// principal returns the request's caller; routes behind authenticate always have one.
func principal(r *http.Request) registry.Principal {
	p, _ := PrincipalFrom(r.Context())
	return p
}

// inCallersOrgs is the items of the orgs the caller of r may see, and
// those of no org when public (never nil, so an empty list is [] in JSON).
func inCallersOrgs[T any](r *http.Request, items []T, org func(T) string, public bool) []T {
	p := principal(r)
	out := []T{}
	for _, it := range items {
		if o := org(it); p.InOrg(o) || public && o == "" {
			out = append(out, it)
		}
	}
	return out
}
