package httpapi

import (
	"fmt"
	"net/http"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// routeRegistry serves the registry: products, devices and the asset tree.
func (s *Server) routeRegistry(mux *http.ServeMux) {
	s.handle(mux, "GET /api/v1/products", s.listProducts)
	s.handle(mux, "POST /api/v1/products", s.createProduct)
	s.handle(mux, "GET /api/v1/products/{pk}", s.getProduct)
	s.handle(mux, "PUT /api/v1/products/{pk}", s.putProduct)
	s.handle(mux, "DELETE /api/v1/products/{pk}", s.deleteProduct)
	s.handle(mux, "GET /api/v1/devices", s.listDevices)
	s.handle(mux, "POST /api/v1/devices", s.createDevice)
	s.handle(mux, "GET /api/v1/devices/{pk}/{dk}", s.getDevice)
	s.handle(mux, "PATCH /api/v1/devices/{pk}/{dk}", s.patchDevice)
	s.handle(mux, "DELETE /api/v1/devices/{pk}/{dk}", s.deleteDevice)
	s.handle(mux, "GET /api/v1/assets", s.listAssets)
	s.handle(mux, "POST /api/v1/assets", s.createAsset)
}

// listProducts answers the products the caller sees: the public library
// and its orgs' own.
func (s *Server) listProducts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, inCallersOrgs(r, s.deps.Registry.Products(), func(p api.Product) string { return p.Org }, true))
}

// createProduct makes a product of the caller's org; a cluster account's
// may be of any org, or of the public library (no org).
func (s *Server) createProduct(w http.ResponseWriter, r *http.Request) {
	var p api.Product
	if !decodeJSON(w, r, &p) {
		return
	}
	if !ownsProductOrg(w, r, &p.Org) {
		return
	}
	s.saveProduct(w, r, p, false)
}

// getProduct answers one product the caller sees.
func (s *Server) getProduct(w http.ResponseWriter, r *http.Request) {
	if m, ok := s.product(w, r); ok {
		writeJSON(w, http.StatusOK, m.Product)
	}
}

// putProduct replaces a product the caller may change; an org left out
// stays as it was.
func (s *Server) putProduct(w http.ResponseWriter, r *http.Request) {
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
	cur, ok := s.changeableProduct(w, r)
	if !ok {
		return
	}
	if p.Org == "" {
		p.Org = cur.Product.Org
	}
	s.saveProduct(w, r, p, true)
}

// saveProduct stores p, a new product or (replace) a changed one, and
// answers it as the registry now has it: 201 for a new one, 200 for a
// changed one.
func (s *Server) saveProduct(w http.ResponseWriter, r *http.Request, p api.Product, replace bool) {
	if err := s.deps.Registry.PutProduct(r.Context(), p, replace); err != nil {
		writeRegistryError(w, err)
		return
	}
	m, _ := s.deps.Registry.Model(p.Key)
	status := http.StatusCreated
	if replace {
		status = http.StatusOK
	}
	writeJSON(w, status, m.Product)
}

// deleteProduct deletes a product the caller may change.
func (s *Server) deleteProduct(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.changeableProduct(w, r); !ok {
		return
	}
	if err := s.deps.Registry.DeleteProduct(r.Context(), r.PathValue("pk")); err != nil {
		writeRegistryError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listDevices answers the devices of the caller's orgs that match the
// query, their secrets hidden from all but their org's admins.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	devices := s.deps.Registry.Devices(registry.DeviceFilter{
		ProductKey: q.Get("productKey"), Org: q.Get("org"), Site: q.Get("site"), Gateway: q.Get("gateway"),
	})
	devices = inCallersOrgs(r, devices, func(d api.Device) string { return d.Org }, false)
	p := principal(r)
	for i := range devices {
		hideSecret(p, &devices[i])
	}
	writeJSON(w, http.StatusOK, devices)
}

// createDevice makes a device; a caller of one org makes devices of its
// org, at its org's sites and gateways.
func (s *Server) createDevice(w http.ResponseWriter, r *http.Request) {
	var in struct {
		api.Device
		Enabled *bool `json:"enabled"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	d := in.Device
	d.Enabled = in.Enabled == nil || *in.Enabled
	p := principal(r)
	if !p.AllOrgs() {
		if d.Org == "" {
			d.Org = p.Org
		}
		if d.Org != p.Org {
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s %q of org %s creates devices of org %s only", p.Kind, p.Name, p.Org, p.Org))
			return
		}
	}
	if !s.placeable(w, r, d) {
		return
	}
	d, err := s.deps.Registry.CreateDevice(r.Context(), d)
	if err != nil {
		writeRegistryError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, d)
}

// getDevice answers one device of the caller's orgs, its secret hidden
// from all but its org's admins.
func (s *Server) getDevice(w http.ResponseWriter, r *http.Request) {
	d, ok := s.device(w, r)
	if !ok {
		return
	}
	hideSecret(principal(r), &d)
	writeJSON(w, http.StatusOK, d)
}

// patchDevice changes a device of the caller's orgs; a caller of one org
// places it at its org's sites and gateways only.
func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request) {
	var p registry.DevicePatch
	if !decodeJSON(w, r, &p) {
		return
	}
	cur, ok := s.device(w, r)
	if !ok {
		return
	}
	p.ApplyTo(&cur)
	if !s.placeable(w, r, cur) {
		return
	}
	d, err := s.deps.Registry.PatchDevice(r.Context(), r.PathValue("pk"), r.PathValue("dk"), p)
	if err != nil {
		writeRegistryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// deleteDevice deletes a device of the caller's orgs.
func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.device(w, r); !ok {
		return
	}
	if err := s.deps.Registry.DeleteDevice(r.Context(), r.PathValue("pk"), r.PathValue("dk")); err != nil {
		writeRegistryError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listAssets answers the asset tree of the caller's orgs.
func (s *Server) listAssets(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, inCallersOrgs(r, s.deps.Registry.AssetTree(), func(a *api.Asset) string { return a.Org }, false))
}

// createAsset makes an asset; a caller of one org makes them under its
// org's assets only, and orgs are a cluster account's to make.
func (s *Server) createAsset(w http.ResponseWriter, r *http.Request) {
	reg := s.deps.Registry
	var a api.Asset
	if !decodeJSON(w, r, &a) {
		return
	}
	if p := principal(r); !p.AllOrgs() {
		if a.Kind == api.AssetOrg {
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s %q of org %s creates sites of its org; orgs are made by a cluster admin", p.Kind, p.Name, p.Org))
			return
		}
		if parent, ok := reg.Asset(a.Parent); !ok || parent.Org != p.Org {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid: parent %q does not exist", a.Parent))
			return
		}
	}
	a, err := reg.PutAsset(r.Context(), a)
	if err != nil {
		writeRegistryError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, a)
}

// product returns the product of r's path, answering 404 when there is
// none or it is another org's: a caller reads the public library and its
// org's own products.
func (s *Server) product(w http.ResponseWriter, r *http.Request) (*registry.Model, bool) {
	pk := r.PathValue("pk")
	m, ok := s.deps.Registry.Model(pk)
	if !ok || m.Product.Org != "" && !principal(r).InOrg(m.Product.Org) {
		writeError(w, http.StatusNotFound, "product "+pk+" not found")
		return nil, false
	}
	return m, true
}

// changeableProduct is product, answering 403 as well to a caller of one
// org for a product of the public library, which only cluster accounts change.
func (s *Server) changeableProduct(w http.ResponseWriter, r *http.Request) (*registry.Model, bool) {
	m, ok := s.product(w, r)
	if !ok {
		return nil, false
	}
	if p := principal(r); m.Product.Org == "" && !p.AllOrgs() {
		writeError(w, http.StatusForbidden, fmt.Sprintf("product %s is of the public model library, read-only to an org; %s %q of org %s changes its org's products only",
			m.Product.Key, p.Kind, p.Name, p.Org))
		return nil, false
	}
	return m, true
}

// ownsProductOrg sets the org of a new product of a caller of one org to
// its org (a cluster account's stays as given: "" is the public library),
// answering 403 for another org.
func ownsProductOrg(w http.ResponseWriter, r *http.Request, org *string) bool {
	p := principal(r)
	if p.AllOrgs() {
		return true
	}
	if *org == "" {
		*org = p.Org
	}
	if *org != p.Org {
		writeError(w, http.StatusForbidden, fmt.Sprintf("%s %q of org %s creates products of org %s only; the public library is a cluster admin's", p.Kind, p.Name, p.Org, p.Org))
		return false
	}
	return true
}

// device returns the device of r's path, answering 404 when there is none
// or it is of an org the caller does not see (whose devices it may not know of).
func (s *Server) device(w http.ResponseWriter, r *http.Request) (api.Device, bool) {
	pk, dk := r.PathValue("pk"), r.PathValue("dk")
	d, ok := s.deps.Registry.Device(pk, dk)
	if !ok || !principal(r).InOrg(d.Org) {
		writeError(w, http.StatusNotFound, "device "+pk+"/"+dk+" not found")
		return api.Device{}, false
	}
	return d, true
}

// placeable answers 400 unless the site and gateway (if any) a caller with
// an org places device d at are of its org; another org's are answered as
// the registry answers missing ones.
func (s *Server) placeable(w http.ResponseWriter, r *http.Request, d api.Device) bool {
	p := principal(r)
	if p.AllOrgs() {
		return true
	}
	if d.Site != "" {
		if a, ok := s.deps.Registry.Asset(d.Site); !ok || a.Org != p.Org {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid: site %q does not exist", d.Site))
			return false
		}
	}
	if d.GatewayDeviceKey != "" {
		if g, ok := s.deps.Registry.Device(d.GatewayProductKey, d.GatewayDeviceKey); !ok || g.Org != p.Org {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid: gateway %s/%s does not exist", d.GatewayProductKey, d.GatewayDeviceKey))
			return false
		}
	}
	return true
}

// hideSecret blanks d's secret unless p is an admin of d's org.
func hideSecret(p registry.Principal, d *api.Device) {
	if !p.Has(api.RoleAdmin) || !p.InOrg(d.Org) {
		d.Secret = ""
	}
}
