package httpapi

import (
	"net/http"

	"github.com/gale-iot/gale/platform/rules"
)

// routeLister is the rule engines when they list the routes (rules.Set).
type routeLister interface {
	RouteInfos() []rules.RouteInfo
}

// routeRoutes serves GET /api/v1/routes to cluster accounts (routes read
// every org's messages): each route's sources, match and action targets.
func (s *Server) routeRoutes(mux *http.ServeMux) {
	rl, ok := s.deps.Rules.(routeLister)
	if !ok {
		return
	}
	s.handle(mux, "GET /api/v1/routes", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, rl.RouteInfos())
	})
}
