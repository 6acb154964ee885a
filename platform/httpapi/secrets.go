package httpapi

import (
	"io"
	"net/http"

	"github.com/gale-iot/gale/platform/registry"
)

// routeSecrets serves POST /api/v1/devices/{pk}/{dk}/secret to admins of
// the device's org (or cluster admins): the device gets a new secret,
// answered once (never stored in the audit log, which records the
// rotation); the old one stops working and its session is dropped.
func (s *Server) routeSecrets(mux *http.ServeMux) {
	s.handle(mux, "POST /api/v1/devices/{pk}/{dk}/secret", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.device(w, r); !ok {
			return
		}
		d, err := s.deps.Registry.RotateSecret(r.Context(), r.PathValue("pk"), r.PathValue("dk"))
		if err != nil {
			writeRegistryError(w, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, map[string]string{"productKey": d.ProductKey, "deviceKey": d.DeviceKey, "secret": d.Secret})
	})
}

// routeProductYAML serves POST /api/v1/product-yaml to admins: it parses
// and checks a product YAML document (as the shipped thing models are
// written) and answers it as JSON, storing nothing; the console imports it
// through the products API, which decides who may store it.
func (s *Server) routeProductYAML(mux *http.ServeMux) {
	s.handle(mux, "POST /api/v1/product-yaml", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			writeBodyError(w, err)
			return
		}
		p, err := registry.ParseProduct(b)
		if err != nil {
			writeRegistryError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
}
