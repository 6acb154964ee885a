package httpapi

import (
	"net/http"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

func (s *Server) routeRegistry(mux *http.ServeMux) {
	reg := s.deps.Registry
	s.handle(mux, "GET /api/v1/products", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, reg.Products())
	})
	s.handle(mux, "POST /api/v1/products", func(w http.ResponseWriter, r *http.Request) {
		var p api.Product
		if !decodeJSON(w, r, &p) {
			return
		}
		if err := reg.PutProduct(r.Context(), p, false); err != nil {
			writeRegistryError(w, err)
			return
		}
		m, _ := reg.Model(p.Key)
		writeJSON(w, http.StatusCreated, m.Product)
	})
	s.handle(mux, "GET /api/v1/products/{pk}", func(w http.ResponseWriter, r *http.Request) {
		m, ok := reg.Model(r.PathValue("pk"))
		if !ok {
			writeError(w, http.StatusNotFound, "product "+r.PathValue("pk")+" not found")
			return
		}
		writeJSON(w, http.StatusOK, m.Product)
	})
	s.handle(mux, "PUT /api/v1/products/{pk}", func(w http.ResponseWriter, r *http.Request) {
		var p api.Product
		if !decodeJSON(w, r, &p) {
			return
		}
		if p.Key == "" {
			p.Key = r.PathValue("pk")
		}
		if p.Key != r.PathValue("pk") {
			writeError(w, http.StatusBadRequest, "productKey in the body differs from the path")
			return
		}
		if err := reg.PutProduct(r.Context(), p, true); err != nil {
			writeRegistryError(w, err)
			return
		}
		m, _ := reg.Model(p.Key)
		writeJSON(w, http.StatusOK, m.Product)
	})
	s.handle(mux, "DELETE /api/v1/products/{pk}", func(w http.ResponseWriter, r *http.Request) {
		if err := reg.DeleteProduct(r.Context(), r.PathValue("pk")); err != nil {
			writeRegistryError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	s.handle(mux, "GET /api/v1/devices", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		devices := reg.Devices(registry.DeviceFilter{
			ProductKey: q.Get("productKey"), Org: q.Get("org"), Site: q.Get("site"), Gateway: q.Get("gateway"),
		})
		p := principal(r)
		for i := range devices {
			hideSecret(p, &devices[i])
		}
		writeJSON(w, http.StatusOK, devices)
	})
	s.handle(mux, "POST /api/v1/devices", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			api.Device
			Enabled *bool `json:"enabled"`
		}
		if !decodeJSON(w, r, &in) {
			return
		}
		d := in.Device
		d.Enabled = in.Enabled == nil || *in.Enabled
		d, err := reg.CreateDevice(r.Context(), d)
		if err != nil {
			writeRegistryError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, d)
	})
	s.handle(mux, "GET /api/v1/devices/{pk}/{dk}", func(w http.ResponseWriter, r *http.Request) {
		d, ok := reg.Device(r.PathValue("pk"), r.PathValue("dk"))
		if !ok {
			writeError(w, http.StatusNotFound, "device "+r.PathValue("pk")+"/"+r.PathValue("dk")+" not found")
			return
		}
		hideSecret(principal(r), &d)
		writeJSON(w, http.StatusOK, d)
	})
	s.handle(mux, "PATCH /api/v1/devices/{pk}/{dk}", func(w http.ResponseWriter, r *http.Request) {
		var p registry.DevicePatch
		if !decodeJSON(w, r, &p) {
			return
		}
		d, err := reg.PatchDevice(r.Context(), r.PathValue("pk"), r.PathValue("dk"), p)
		if err != nil {
			writeRegistryError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, d)
	})
	s.handle(mux, "DELETE /api/v1/devices/{pk}/{dk}", func(w http.ResponseWriter, r *http.Request) {
		if err := reg.DeleteDevice(r.Context(), r.PathValue("pk"), r.PathValue("dk")); err != nil {
			writeRegistryError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	s.handle(mux, "GET /api/v1/assets", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, reg.AssetTree())
	})
	s.handle(mux, "POST /api/v1/assets", func(w http.ResponseWriter, r *http.Request) {
		var a api.Asset
		if !decodeJSON(w, r, &a) {
			return
		}
		a, err := reg.PutAsset(r.Context(), a)
		if err != nil {
			writeRegistryError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, a)
	})
}

// hideSecret blanks d's secret unless p is an admin of d's org.
func hideSecret(p registry.Principal, d *api.Device) {
	if !p.Has(api.RoleAdmin) || !p.InOrg(d.Org) {
		d.Secret = ""
	}
}
