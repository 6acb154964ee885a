// Package control is the twin control API: list turbines and gateways,
// inject and clear turbine and Modbus faults, read and set the sim clock.
// Errors are {"error":"..."} with a 4xx status.
package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/twins/clock"
	"github.com/gale-iot/gale/twins/modbus"
	"github.com/gale-iot/gale/twins/turbine"
)

// Fleet is what the control API needs of the twin fleet.
type Fleet interface {
	Turbines() []*turbine.Turbine
	Turbine(deviceKey string) (*turbine.Turbine, bool)
	Gateways() []*modbus.Gateway
	Gateway(id string) (*modbus.Gateway, bool)
	Clock() *clock.Clock
}

// maxBody bounds request bodies.
const maxBody = 64 << 10

type handler struct {
	fleet Fleet
	log   *slog.Logger
}

// New returns the control API handler, serving under /twins/v1/.
func New(f Fleet, logger *slog.Logger) http.Handler {
	h := handler{fleet: f, log: logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /twins/v1/turbines", h.listTurbines)
	mux.HandleFunc("GET /twins/v1/turbines/{deviceKey}", h.getTurbine)
	mux.HandleFunc("POST /twins/v1/turbines/{deviceKey}/faults", h.injectTurbineFault)
	mux.HandleFunc("DELETE /twins/v1/turbines/{deviceKey}/faults", h.clearTurbineFault)
	mux.HandleFunc("GET /twins/v1/gateways", h.listGateways)
	mux.HandleFunc("POST /twins/v1/gateways/{id}/faults", h.injectGatewayFault)
	mux.HandleFunc("DELETE /twins/v1/gateways/{id}/faults", h.clearGatewayFault)
	mux.HandleFunc("GET /twins/v1/clock", h.getClock)
	mux.HandleFunc("POST /twins/v1/clock", h.setClock)
	return mux
}

// TurbineStatus is a turbine as the API shows it.
type TurbineStatus struct {
	// DeviceKey identifies the turbine.
	DeviceKey string `json:"deviceKey"`
	// Site is its farm.
	Site string `json:"site"`
	// Model is the turbine type.
	Model string `json:"model"`
	// State is the state's name.
	State string `json:"state"`
	// StateCode is the state's WTUR.TurSt code.
	StateCode int `json:"stateCode"`
	// Online is false while the offline fault is injected.
	Online bool `json:"online"`
	// Faults are the injected faults.
	Faults []turbine.Fault `json:"faults"`
	// Latched is the latched fault, if any.
	Latched *LatchedFault `json:"latchedFault,omitempty"`
	// Time is the sim time of Points.
	Time time.Time `json:"time"`
	// Points are the current IEC 61400-25 points.
	Points map[string]float64 `json:"points"`
}

// LatchedFault is a turbine's latched fault.
type LatchedFault struct {
	// Code is the fault event code.
	Code int `json:"code"`
	// Text describes the fault.
	Text string `json:"text"`
}

// GatewayStatus is a gateway as the API shows it.
type GatewayStatus struct {
	// ID identifies the gateway.
	ID string `json:"id"`
	// Addr is where it serves Modbus TCP.
	Addr string `json:"addr"`
	// Units are the devices behind it.
	Units []regmap.Unit `json:"units"`
	// Faults are the injected faults.
	Faults []modbus.Fault `json:"faults"`
}

// ClockStatus is the sim clock as the API shows it.
type ClockStatus struct {
	// Now is the sim time.
	Now time.Time `json:"now"`
	// Speed is sim seconds per wall second.
	Speed float64 `json:"speed"`
	// Paused is true while sim time stands still.
	Paused bool `json:"paused"`
}

// ClockUpdate changes the clock; absent fields stay as they are.
type ClockUpdate struct {
	// Speed is the new speed factor (1…10000).
	Speed *float64 `json:"speed"`
	// Paused pauses or resumes the clock.
	Paused *bool `json:"paused"`
}

func turbineStatus(t *turbine.Turbine) TurbineStatus {
	st := t.State()
	s := TurbineStatus{
		DeviceKey: t.ID(), Site: t.Site(), Model: t.Model().Name, State: st.String(), StateCode: int(st),
		Online: t.Online(), Faults: t.Injected(), Time: t.PointsTime(), Points: t.Points(),
	}
	if s.Faults == nil {
		s.Faults = []turbine.Fault{}
	}
	if code, text := t.LatchedFault(); code != 0 {
		s.Latched = &LatchedFault{Code: code, Text: text}
	}
	return s
}

func gatewayStatus(g *modbus.Gateway) GatewayStatus {
	s := GatewayStatus{ID: g.ID(), Addr: g.Addr(), Units: g.Units(), Faults: g.Faults()}
	if s.Faults == nil {
		s.Faults = []modbus.Fault{}
	}
	return s
}

// list answers the status of every item.
func list[T, S any](w http.ResponseWriter, items []T, status func(T) S) {
	out := make([]S, 0, len(items))
	for _, it := range items {
		out = append(out, status(it))
	}
	writeJSON(w, http.StatusOK, out)
}

// find looks up the request's path value param, or answers 404 naming the missing what.
func find[T any](w http.ResponseWriter, r *http.Request, param, what string, lookup func(string) (T, bool)) (T, bool) {
	key := r.PathValue(param)
	v, ok := lookup(key)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no %s %q", what, key))
	}
	return v, ok
}

func (h handler) listTurbines(w http.ResponseWriter, _ *http.Request) {
	list(w, h.fleet.Turbines(), turbineStatus)
}

func (h handler) turbine(w http.ResponseWriter, r *http.Request) (*turbine.Turbine, bool) {
	return find(w, r, "deviceKey", "turbine", h.fleet.Turbine)
}

func (h handler) getTurbine(w http.ResponseWriter, r *http.Request) {
	if t, ok := h.turbine(w, r); ok {
		writeJSON(w, http.StatusOK, turbineStatus(t))
	}
}

func (h handler) injectTurbineFault(w http.ResponseWriter, r *http.Request) {
	t, ok := h.turbine(w, r)
	if !ok {
		return
	}
	var body struct {
		Fault string `json:"fault"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	h.changeTurbineFault(w, t, body.Fault, "injected", t.Inject)
}

// changeTurbineFault applies change (t.Inject or t.Clear) to the fault
// named name and answers t's status; an unknown fault or a refused change is 400.
func (h handler) changeTurbineFault(w http.ResponseWriter, t *turbine.Turbine, name, done string, change func(turbine.Fault) error) {
	f, err := turbine.ParseFault(name)
	if err == nil {
		err = change(f)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	h.log.Info("turbine fault "+done, "device", t.ID(), "fault", name)
	writeJSON(w, http.StatusOK, turbineStatus(t))
}

func (h handler) clearTurbineFault(w http.ResponseWriter, r *http.Request) {
	t, ok := h.turbine(w, r)
	if !ok {
		return
	}
	name := r.URL.Query().Get("fault")
	if name == "" {
		t.ClearAll()
		h.log.Info("turbine faults cleared", "device", t.ID())
		writeJSON(w, http.StatusOK, turbineStatus(t))
		return
	}
	h.changeTurbineFault(w, t, name, "cleared", t.Clear)
}

func (h handler) listGateways(w http.ResponseWriter, _ *http.Request) {
	list(w, h.fleet.Gateways(), gatewayStatus)
}

func (h handler) gateway(w http.ResponseWriter, r *http.Request) (*modbus.Gateway, bool) {
	return find(w, r, "id", "gateway", h.fleet.Gateway)
}

func (h handler) injectGatewayFault(w http.ResponseWriter, r *http.Request) {
	g, ok := h.gateway(w, r)
	if !ok {
		return
	}
	var f modbus.Fault
	if !readJSON(w, r, &f) {
		return
	}
	answerGatewayFault(w, g, g.Inject(f))
}

// answerGatewayFault answers g's status after a fault change, or its error:
// 400 for a fault the gateway refuses, else 500.
func answerGatewayFault(w http.ResponseWriter, g *modbus.Gateway, err error) {
	switch {
	case errors.Is(err, modbus.ErrFault):
		writeError(w, http.StatusBadRequest, err)
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
	default:
		writeJSON(w, http.StatusOK, gatewayStatus(g))
	}
}

func (h handler) clearGatewayFault(w http.ResponseWriter, r *http.Request) {
	g, ok := h.gateway(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var unit uint64
	if s := q.Get("unit"); s != "" {
		var err error
		if unit, err = strconv.ParseUint(s, 10, 8); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("unit %q: want 0…255", s))
			return
		}
	}
	answerGatewayFault(w, g, g.Clear(modbus.FaultKind(q.Get("fault")), uint8(unit)))
}

func (h handler) clockStatus() ClockStatus {
	c := h.fleet.Clock()
	return ClockStatus{Now: c.Now(), Speed: c.Speed(), Paused: c.Paused()}
}

func (h handler) getClock(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.clockStatus())
}

func (h handler) setClock(w http.ResponseWriter, r *http.Request) {
	var u ClockUpdate
	if !readJSON(w, r, &u) {
		return
	}
	c := h.fleet.Clock()
	if u.Speed != nil {
		if err := c.SetSpeed(*u.Speed); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
	}
	if u.Paused != nil {
		if *u.Paused {
			c.Pause()
		} else {
			c.Resume()
		}
	}
	h.log.Info("clock changed", "speed", c.Speed(), "paused", c.Paused())
	writeJSON(w, http.StatusOK, h.clockStatus())
}

// readJSON decodes a bounded, strict JSON body, answering 400 on failure.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
