package httpapi

import (
	"fmt"
	"io"
	"net/http"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/runs"
)

// routeRuns serves the reports of the last loadgen and scenario runs:
// operators post them (of their org; a cluster account's of any org or of
// none), everyone reads those of the orgs they see.
func (s *Server) routeRuns(mux *http.ServeMux) {
	store := s.deps.Runs
	s.handle(mux, "POST /api/v1/runs", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			writeBodyError(w, err)
			return
		}
		run, err := runs.Parse(b)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		p := principal(r)
		switch {
		case !p.AllOrgs() && run.Org == "":
			run.Org = p.Org
		case !p.AllOrgs() && run.Org != p.Org:
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s %q of org %s posts runs of org %s only", p.Kind, p.Name, p.Org, p.Org))
			return
		case run.Org != "":
			if a, ok := s.deps.Registry.Asset(run.Org); !ok || a.Kind != api.AssetOrg {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("org: %q does not exist", run.Org))
				return
			}
		}
		run, err = store.Add(run, p.Name)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "run not stored: "+err.Error())
			return
		}
		writeJSON(w, http.StatusCreated, run.Summary())
	})
	s.handle(mux, "GET /api/v1/runs", func(w http.ResponseWriter, r *http.Request) {
		list, err := store.List(principal(r).InOrg)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, list)
	})
	s.handle(mux, "GET /api/v1/runs/{run}", func(w http.ResponseWriter, r *http.Request) {
		run, ok, err := store.Get(r.PathValue("run"))
		switch {
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
		case !ok || !principal(r).InOrg(run.Org): // another org's run is answered as a missing one
			writeError(w, http.StatusNotFound, "run "+r.PathValue("run")+" not found")
		default:
			writeJSON(w, http.StatusOK, run)
		}
	})
}
