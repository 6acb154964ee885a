// Package modbus is the twins' Modbus TCP gateway: a real Modbus TCP server
// (github.com/simonvetter/modbus) that exposes the devices behind it by unit
// id through their register maps (function codes 1, 2, 3, 4, 5, 6, 15, 16),
// passes setpoint and command writes to the devices, and can be made to
// misbehave at run time: timeouts, exception codes, stale values with a
// stopped heartbeat, a connection limit and a wrong byte order.
package modbus

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/twins/turbine"
)

// Device is what a gateway needs of a device behind it.
type Device interface {
	// Points returns the device's current values by point name.
	Points() map[string]float64
	// Online reports whether the device answers at all.
	Online() bool
	// WritePoint applies a write of a writable register or coil.
	WritePoint(point string, v float64) error
}

type unit struct {
	cfg       regmap.Unit
	device    Device
	m         *regmap.Map
	heartbeat uint32
}

// Gateway is a Modbus TCP gateway twin. It is safe for concurrent use.
type Gateway struct {
	cfg   Config
	log   *slog.Logger
	units map[uint8]*unit

	mu      sync.Mutex
	server  *mb.ModbusServer
	addr    string
	faults  []Fault
	stale   map[uint8]map[string]float64
	release chan struct{} // closed to let held (timed-out) requests go
}

// New returns a gateway for cfg; devices resolves the units' device keys.
func New(cfg Config, devices func(key string) (Device, bool), logger *slog.Logger) (*Gateway, error) {
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway %s: %w", cfg.ID, err)
	}
	g := &Gateway{
		cfg:     cfg,
		log:     logger.With("gateway", cfg.ID),
		units:   map[uint8]*unit{},
		stale:   map[uint8]map[string]float64{},
		release: make(chan struct{}),
	}
	for _, u := range cfg.Units {
		d, ok := devices(u.Device)
		if !ok {
			return nil, fmt.Errorf("gateway %s: unit %d: unknown device %q", cfg.ID, u.ID, u.Device)
		}
		m, err := regmap.Shipped(u.Map)
		if err != nil {
			return nil, fmt.Errorf("gateway %s: %w", cfg.ID, err)
		}
		g.units[u.ID] = &unit{cfg: u, device: d, m: m}
	}
	return g, nil
}

// ID returns the gateway's id.
func (g *Gateway) ID() string { return g.cfg.ID }

// Units returns the devices behind the gateway.
func (g *Gateway) Units() []regmap.Unit { return slices.Clone(g.cfg.Units) }

// Addr returns the address the gateway serves on (with the port it got for
// port 0) once started.
func (g *Gateway) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

// Start listens and serves in the background.
func (g *Gateway) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.server != nil {
		return nil
	}
	addr := g.cfg.Addr
	if _, port, _ := net.SplitHostPort(addr); port == "0" {
		// The library does not report the port it bound, so find a free one first.
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("gateway %s: listen %s: %w", g.cfg.ID, addr, err)
		}
		addr = l.Addr().String()
		l.Close()
	}
	g.addr = addr
	if err := g.serve(g.limit()); err != nil {
		return err
	}
	g.log.Info("modbus gateway serving", "addr", addr, "units", len(g.units))
	return nil
}

// serve starts a server on g.addr; g.mu is held.
func (g *Gateway) serve(maxClients int) error {
	s, err := mb.NewServer(&mb.ServerConfiguration{
		URL:        "tcp://" + g.addr,
		Timeout:    g.cfg.IdleTimeout,
		MaxClients: uint(maxClients),
		Logger:     slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}, handler{g})
	if err != nil {
		return fmt.Errorf("gateway %s: %w", g.cfg.ID, err)
	}
	if err := s.Start(); err != nil {
		return fmt.Errorf("gateway %s: listen %s: %w", g.cfg.ID, g.addr, err)
	}
	g.server = s
	return nil
}

// Stop closes the listener and every connection.
func (g *Gateway) Stop() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.letGo()
	if g.server == nil {
		return nil
	}
	err := g.server.Stop()
	g.server = nil
	return err
}

// letGo releases requests held by the timeout fault; g.mu is held.
func (g *Gateway) letGo() {
	close(g.release)
	g.release = make(chan struct{})
}

// Tick advances the heartbeat counter of every unit that is not stale; the
// fleet calls it after each physics step.
func (g *Gateway) Tick() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, u := range g.units {
		if _, stale := g.stale[id]; !stale {
			u.heartbeat++
		}
	}
}

// Inject starts a fault; a fault of the same kind and unit replaces the old one.
func (g *Gateway) Inject(f Fault) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if _, ok := g.units[f.Unit]; f.Unit != 0 && !ok {
		return fmt.Errorf("%w: no unit %d behind gateway %s", ErrFault, f.Unit, g.cfg.ID)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.faults = slices.DeleteFunc(g.faults, func(o Fault) bool { return o.Kind == f.Kind && o.Unit == f.Unit })
	g.faults = append(g.faults, f)
	switch f.Kind {
	case FaultStale:
		for id, u := range g.units {
			if _, done := g.stale[id]; f.matches(FaultStale, id) && !done {
				g.stale[id] = u.device.Points()
			}
		}
	case FaultMaxClients:
		if err := g.restart(f.Clients); err != nil {
			return err
		}
	}
	g.log.Info("fault injected", "fault", f.Kind, "unit", f.Unit, "code", f.Code, "clients", f.Clients, "order", f.Order)
	return nil
}

// Clear ends faults of kind (every kind when empty) for unit (every unit when 0).
func (g *Gateway) Clear(kind FaultKind, unitID uint8) error {
	switch kind {
	case "", FaultTimeout, FaultException, FaultStale, FaultMaxClients, FaultByteOrder:
	default:
		return fmt.Errorf("%w: unknown fault %q", ErrFault, kind)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	limited := g.limit() != g.cfg.MaxClients
	g.faults = slices.DeleteFunc(g.faults, func(f Fault) bool {
		return (kind == "" || f.Kind == kind) && (unitID == 0 || f.Unit == unitID)
	})
	for id := range g.stale {
		if !g.active(FaultStale, id) {
			delete(g.stale, id)
		}
	}
	g.letGo()
	if limited && g.limit() == g.cfg.MaxClients {
		if err := g.restart(g.cfg.MaxClients); err != nil {
			return err
		}
	}
	g.log.Info("faults cleared", "fault", kind, "unit", unitID)
	return nil
}

// Faults lists the active faults.
func (g *Gateway) Faults() []Fault {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.faults)
}

// find returns the active fault of kind for unit id; g.mu is held.
func (g *Gateway) find(kind FaultKind, id uint8) (Fault, bool) {
	for i := len(g.faults) - 1; i >= 0; i-- {
		if g.faults[i].matches(kind, id) {
			return g.faults[i], true
		}
	}
	return Fault{}, false
}

func (g *Gateway) active(kind FaultKind, id uint8) bool {
	_, ok := g.find(kind, id)
	return ok
}

// limit is the connection limit in force; g.mu is held.
func (g *Gateway) limit() int {
	if f, ok := g.find(FaultMaxClients, 0); ok {
		return f.Clients
	}
	return g.cfg.MaxClients
}

// restart replaces the server by one with another connection limit; g.mu is held.
func (g *Gateway) restart(maxClients int) error {
	if g.server == nil {
		return nil // not started: Start applies the configured limit
	}
	if err := g.server.Stop(); err != nil {
		g.log.Warn("stop modbus server", "err", err)
	}
	g.server = nil
	return g.serve(maxClients)
}

// request is what a request needs after the faults have had their say.
type request struct {
	u      *unit
	values map[string]float64
	order  func(regmap.Register) regmap.Order
	hb     uint32
}

// begin applies the faults and resolves the unit of a request.
func (g *Gateway) begin(id uint8) (request, error) {
	g.mu.Lock()
	if _, ok := g.find(FaultTimeout, id); ok {
		release := g.release
		g.mu.Unlock()
		t := time.NewTimer(g.cfg.TimeoutHold)
		defer t.Stop()
		select {
		case <-release:
		case <-t.C:
		}
		// The server closes the connection without answering on a protocol error.
		return request{}, mb.ErrProtocolError
	}
	defer g.mu.Unlock()
	if f, ok := g.find(FaultException, id); ok {
		return request{}, exception(f.Code)
	}
	u, ok := g.units[id]
	if !ok || !u.device.Online() {
		return request{}, mb.ErrGWTargetFailedToRespond
	}
	r := request{u: u, hb: u.heartbeat, order: func(reg regmap.Register) regmap.Order { return reg.Order }}
	if f, ok := g.find(FaultByteOrder, id); ok {
		r.order = func(reg regmap.Register) regmap.Order {
			if f.Order != "" {
				return f.Order
			}
			return reg.Order.WordSwapped()
		}
	}
	if v, ok := g.stale[id]; ok {
		r.values = v
	} else {
		r.values = u.device.Points()
	}
	return r, nil
}

// value is the engineering value of reg in the request.
func (r request) value(reg *regmap.Register) float64 {
	if reg == r.u.m.Heartbeat {
		if reg.Type == regmap.TypeUint16 {
			return float64(r.hb & 0xFFFF)
		}
		return float64(r.hb)
	}
	return r.values[reg.Point]
}

// inSpan checks that [addr, addr+n) lies within the mapped span of area.
func inSpan(m *regmap.Map, area regmap.Area, addr, n uint16) error {
	lo, hi := m.Span(area)
	if int(addr) < lo || int(addr)+int(n) > hi {
		return mb.ErrIllegalDataAddress
	}
	return nil
}

func (g *Gateway) readRegisters(id uint8, area regmap.Area, addr, n uint16) ([]uint16, error) {
	r, err := g.begin(id)
	if err != nil {
		return nil, err
	}
	if err := inSpan(r.u.m, area, addr, n); err != nil {
		return nil, err
	}
	out := make([]uint16, n)
	for i := 0; i < int(n); {
		reg, word, ok := r.u.m.At(area, addr+uint16(i))
		if !ok {
			i++ // a gap inside the span reads as zero
			continue
		}
		words, err := reg.EncodeAs(reg.Clamp(r.value(reg)), r.order(*reg))
		if err != nil {
			g.log.Warn("encode register", "unit", id, "point", reg.Point, "err", err)
			return nil, mb.ErrServerDeviceFailure
		}
		i += copy(out[i:], words[word:])
	}
	return out, nil
}

func (g *Gateway) readBits(id uint8, area regmap.Area, addr, n uint16) ([]bool, error) {
	r, err := g.begin(id)
	if err != nil {
		return nil, err
	}
	if err := inSpan(r.u.m, area, addr, n); err != nil {
		return nil, err
	}
	out := make([]bool, n)
	for i := range out {
		if reg, _, ok := r.u.m.At(area, addr+uint16(i)); ok {
			out[i] = r.value(reg) != 0
		}
	}
	return out, nil
}

type write struct {
	point string
	value float64
}

func (g *Gateway) writeRegisters(id uint8, addr uint16, args []uint16) error {
	r, err := g.begin(id)
	if err != nil {
		return err
	}
	var writes []write
	for i := 0; i < len(args); {
		reg, word, ok := r.u.m.At(regmap.AreaHolding, addr+uint16(i))
		n := 0
		if ok {
			n = reg.Type.Words()
		}
		// every register written must be writable and written whole
		if !ok || !reg.Writable || word != 0 || i+n > len(args) {
			return mb.ErrIllegalDataAddress
		}
		v, err := reg.DecodeAs(args[i:i+n], r.order(*reg))
		if err != nil {
			return mb.ErrIllegalDataValue
		}
		writes = append(writes, write{reg.Point, v})
		i += n
	}
	return g.apply(r.u, writes)
}

func (g *Gateway) writeCoils(id uint8, addr uint16, args []bool) error {
	r, err := g.begin(id)
	if err != nil {
		return err
	}
	writes := make([]write, len(args))
	for i, on := range args {
		reg, _, ok := r.u.m.At(regmap.AreaCoil, addr+uint16(i))
		if !ok || !reg.Writable {
			return mb.ErrIllegalDataAddress
		}
		writes[i] = write{reg.Point, 0}
		if on {
			writes[i].value = 1
		}
	}
	return g.apply(r.u, writes)
}

// apply hands the writes to the device and maps its refusals to exceptions:
// a value out of range is 03, a read-only point 02, anything else (e.g. a
// start refused because of a latched fault) 04.
func (g *Gateway) apply(u *unit, writes []write) error {
	for _, w := range writes {
		err := u.device.WritePoint(w.point, w.value)
		switch {
		case err == nil:
			g.log.Debug("write", "unit", u.cfg.ID, "device", u.cfg.Device, "point", w.point, "value", w.value)
		case errors.Is(err, turbine.ErrOutOfRange):
			return mb.ErrIllegalDataValue
		case errors.Is(err, turbine.ErrReadOnly):
			return mb.ErrIllegalDataAddress
		default:
			g.log.Info("write refused", "unit", u.cfg.ID, "device", u.cfg.Device, "point", w.point, "err", err)
			return mb.ErrServerDeviceFailure
		}
	}
	return nil
}

// handler implements mb.RequestHandler for a gateway.
type handler struct{ g *Gateway }

// HandleCoils serves FC 1, 5 and 15.
func (h handler) HandleCoils(req *mb.CoilsRequest) ([]bool, error) {
	if req.IsWrite {
		return nil, h.g.writeCoils(req.UnitId, req.Addr, req.Args)
	}
	return h.g.readBits(req.UnitId, regmap.AreaCoil, req.Addr, req.Quantity)
}

// HandleDiscreteInputs serves FC 2.
func (h handler) HandleDiscreteInputs(req *mb.DiscreteInputsRequest) ([]bool, error) {
	return h.g.readBits(req.UnitId, regmap.AreaDiscrete, req.Addr, req.Quantity)
}

// HandleHoldingRegisters serves FC 3, 6 and 16.
func (h handler) HandleHoldingRegisters(req *mb.HoldingRegistersRequest) ([]uint16, error) {
	if req.IsWrite {
		return nil, h.g.writeRegisters(req.UnitId, req.Addr, req.Args)
	}
	return h.g.readRegisters(req.UnitId, regmap.AreaHolding, req.Addr, req.Quantity)
}

// HandleInputRegisters serves FC 4.
func (h handler) HandleInputRegisters(req *mb.InputRegistersRequest) ([]uint16, error) {
	return h.g.readRegisters(req.UnitId, regmap.AreaInput, req.Addr, req.Quantity)
}
