package httpapi

import (
	"net/http"

	"github.com/gale-iot/gale/platform/console"
)

// routeConsole serves the web console's page and assets without a token
// (they hold no data: every call the page makes carries the user's token),
// the caller's own identity at /api/v1/me and, on a node with latest
// values, the live stream the console draws from.
func (s *Server) routeConsole(public, authed *http.ServeMux) {
	assets := console.Handler()
	public.Handle("GET /{$}", assets)
	public.Handle("GET "+console.AssetPrefix, assets)
	s.handle(authed, "GET /api/v1/me", func(w http.ResponseWriter, r *http.Request) {
		p := principal(r)
		writeJSON(w, http.StatusOK, map[string]string{"id": p.ID, "name": p.Name, "org": p.Org, "role": p.Role, "kind": p.Kind})
	})
	if s.deps.Latest != nil {
		s.handle(authed, "GET /api/v1/stream", s.stream)
	}
}
