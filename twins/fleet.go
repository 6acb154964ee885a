// Package twins runs the digital-twin fleet: wind farms stepped on a
// simulated clock, Modbus TCP gateways in front of their turbines, scheduled
// faults, an event stream and the control API. Physics live in wind,
// turbine and farm, the Modbus servers in modbus, the HTTP API in control.
package twins

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gale-iot/gale/twins/clock"
	"github.com/gale-iot/gale/twins/control"
	"github.com/gale-iot/gale/twins/farm"
	"github.com/gale-iot/gale/twins/modbus"
	"github.com/gale-iot/gale/twins/turbine"
)

// eventBuffer is the capacity of the event channel; events beyond it are
// dropped (and logged) rather than stalling the physics.
const eventBuffer = 1024

// DeviceInfo describes a device of the fleet.
type DeviceInfo struct {
	// Key is the device key.
	Key string `json:"deviceKey"`
	// Product is the product key: wind-turbine or met-mast.
	Product string `json:"productKey"`
	// Site is the farm's site.
	Site string `json:"site"`
	// Model is the turbine type (empty for a mast).
	Model string `json:"model,omitempty"`
	// Gateway is the Modbus gateway the device sits behind; empty when it
	// connects directly over MQTT.
	Gateway string `json:"gateway,omitempty"`
	// Unit is its Modbus unit id behind the gateway.
	Unit uint8 `json:"unit,omitempty"`
}

// pointSource is a turbine or a met mast.
type pointSource interface {
	modbus.Device
	PointsTime() time.Time
}

// Fleet is the twin fleet. Its accessors are safe for concurrent use while Run steps it.
type Fleet struct {
	cfg      Config
	log      *slog.Logger
	clock    *clock.Clock
	start    time.Time
	farms    []*farm.Farm
	devices  []DeviceInfo
	sources  map[string]pointSource
	turbines []*turbine.Turbine
	byKey    map[string]*turbine.Turbine
	gateways []*modbus.Gateway
	byID     map[string]*modbus.Gateway
	faults   []ScheduledFault // by time
	events   chan turbine.Event
	ready    chan struct{}

	mu        sync.Mutex
	simNow    time.Time // end of the last step
	nextFault int
}

// Option changes how New builds the fleet.
type Option func(*Fleet)

// WithClock runs the fleet on c instead of a clock built from the config's
// start and speed (tests pass a manual clock and Step it).
func WithClock(c *clock.Clock) Option { return func(f *Fleet) { f.clock = c } }

// New builds the fleet from a validated config.
func New(cfg Config, logger *slog.Logger, opts ...Option) (*Fleet, error) {
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &Fleet{
		cfg:     cfg,
		log:     logger,
		sources: map[string]pointSource{},
		byKey:   map[string]*turbine.Turbine{},
		byID:    map[string]*modbus.Gateway{},
		events:  make(chan turbine.Event, eventBuffer),
		ready:   make(chan struct{}),
	}
	for _, o := range opts {
		o(f)
	}
	if f.clock == nil {
		start := cfg.Start
		if start.IsZero() {
			start = time.Now().UTC().Truncate(time.Second)
		}
		c, err := clock.New(start, cfg.Speed)
		if err != nil {
			return nil, err
		}
		f.clock = c
	}
	f.start = f.clock.Now()
	f.simNow = f.start

	type slot struct {
		gateway string
		unit    uint8
	}
	behind := map[string]slot{}
	for _, g := range cfg.Gateways {
		for _, u := range g.Units {
			behind[u.Device] = slot{g.ID, u.ID}
		}
	}
	info := func(d DeviceInfo) DeviceInfo {
		b := behind[d.Key]
		d.Gateway, d.Unit = b.gateway, b.unit
		return d
	}
	for _, fc := range cfg.Farms {
		fm, err := farm.New(fc, cfg.Seed, f.start, f.emit)
		if err != nil {
			return nil, fmt.Errorf("farm %q: %w", fc.Site, err)
		}
		f.farms = append(f.farms, fm)
		for _, t := range fm.Turbines() {
			f.turbines = append(f.turbines, t)
			f.byKey[t.ID()] = t
			f.sources[t.ID()] = t
			f.devices = append(f.devices, info(DeviceInfo{Key: t.ID(), Product: ProductTurbine, Site: fc.Site, Model: fc.TurbineType}))
		}
		if m := fm.Mast(); m != nil {
			f.sources[m.ID()] = m
			f.devices = append(f.devices, info(DeviceInfo{Key: m.ID(), Product: ProductMast, Site: fc.Site}))
		}
	}
	resolve := func(k string) (modbus.Device, bool) { d, ok := f.sources[k]; return d, ok }
	for _, gc := range cfg.Gateways {
		g, err := modbus.New(gc, resolve, logger)
		if err != nil {
			return nil, err
		}
		f.gateways = append(f.gateways, g)
		f.byID[g.ID()] = g
	}
	f.faults = slices.Clone(cfg.Faults)
	slices.SortStableFunc(f.faults, func(a, b ScheduledFault) int { return int(a.At - b.At) })
	// a zero step so every device has points before the first real one
	for _, fm := range f.farms {
		fm.Step(0)
	}
	return f, nil
}

// emit forwards a turbine event without ever blocking the physics.
func (f *Fleet) emit(e turbine.Event) {
	select {
	case f.events <- e:
	default:
		f.log.Warn("event dropped: nobody reads the fleet's events", "device", e.Device, "code", e.Code)
	}
}

// Run serves the gateways and steps the physics every Step of sim time until
// ctx ends; then it stops the gateways and returns nil. Ready is closed once
// the gateways listen and the physics follow the clock.
func (f *Fleet) Run(ctx context.Context) error {
	tick, err := f.clock.NewTicker(f.cfg.Step)
	if err != nil {
		return err
	}
	defer tick.Stop()
	for i, g := range f.gateways {
		if err := g.Start(); err != nil {
			for _, s := range f.gateways[:i] {
				_ = s.Stop()
			}
			return err
		}
	}
	defer func() {
		for _, g := range f.gateways {
			if err := g.Stop(); err != nil {
				f.log.Warn("stop gateway", "gateway", g.ID(), "err", err)
			}
		}
	}()
	f.log.Info("twin fleet running", "turbines", len(f.turbines), "gateways", len(f.gateways),
		"speed", f.clock.Speed(), "seed", f.cfg.Seed)
	f.catchUp(ctx, f.clock.Now()) // sim time that passed since New
	close(f.ready)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			f.catchUp(ctx, f.clock.Now())
		}
	}
}

// Ready is closed when Run has started the gateways and follows the clock.
func (f *Fleet) Ready() <-chan struct{} { return f.ready }

// catchUp steps until the sim time of the physics reaches now; a slow
// machine or a Step of the clock makes it run several steps at once.
func (f *Fleet) catchUp(ctx context.Context, now time.Time) {
	for ctx.Err() == nil && !f.Now().Add(f.cfg.Step).After(now) {
		f.step()
	}
}

// step applies the faults that are due and advances every farm by one Step.
func (f *Fleet) step() {
	f.mu.Lock()
	simNow := f.simNow
	var due []ScheduledFault
	for f.nextFault < len(f.faults) && !f.start.Add(f.faults[f.nextFault].At).After(simNow) {
		due = append(due, f.faults[f.nextFault])
		f.nextFault++
	}
	f.mu.Unlock()
	for _, sf := range due {
		if err := f.applyScheduled(sf); err != nil {
			f.log.Warn("scheduled fault", "at", sf.At, "device", sf.Device, "gateway", sf.Gateway, "err", err)
		}
	}
	for _, fm := range f.farms {
		fm.Step(f.cfg.Step)
	}
	for _, g := range f.gateways {
		g.Tick()
	}
	f.mu.Lock()
	f.simNow = simNow.Add(f.cfg.Step)
	f.mu.Unlock()
}

func (f *Fleet) applyScheduled(sf ScheduledFault) error {
	if sf.Device != "" {
		t := f.byKey[sf.Device]
		f.log.Info("scheduled turbine fault", "device", sf.Device, "fault", sf.Kind, "clear", sf.Clear)
		if sf.Clear {
			return t.Clear(turbine.Fault(sf.Kind))
		}
		return t.Inject(turbine.Fault(sf.Kind))
	}
	g := f.byID[sf.Gateway]
	if sf.Clear {
		return g.Clear(sf.Kind, sf.Unit)
	}
	return g.Inject(sf.Fault)
}

// Config returns the fleet's config, with its defaults filled.
func (f *Fleet) Config() Config { return f.cfg }

// Now returns the sim time the physics have reached.
func (f *Fleet) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.simNow
}

// Clock returns the fleet's sim clock.
func (f *Fleet) Clock() *clock.Clock { return f.clock }

// Devices lists every device of the fleet, turbines and masts.
func (f *Fleet) Devices() []DeviceInfo { return slices.Clone(f.devices) }

// Points returns a device's current points and their sim time. An offline
// turbine returns turbine.ErrOffline (and nothing to publish).
func (f *Fleet) Points(deviceKey string) (map[string]float64, time.Time, error) {
	s, ok := f.sources[deviceKey]
	if !ok {
		return nil, time.Time{}, fmt.Errorf("%w: %q", ErrUnknownDevice, deviceKey)
	}
	if !s.Online() {
		return nil, time.Time{}, fmt.Errorf("%s: %w", deviceKey, turbine.ErrOffline)
	}
	return s.Points(), s.PointsTime(), nil
}

// Invoke runs a service of a turbine: setPowerLimit ({"powerLimit": kW}),
// start, stop or resetFault. Errors wrap turbine.ErrUnknownService,
// ErrOutOfRange, ErrOffline, ErrFaultActive or ErrCauseActive.
func (f *Fleet) Invoke(deviceKey, service string, params map[string]any) error {
	t, ok := f.byKey[deviceKey]
	if !ok {
		return fmt.Errorf("%w: no turbine %q", ErrUnknownDevice, deviceKey)
	}
	return t.Invoke(service, params)
}

// Events delivers the turbines' fault events. Read it: events that do not
// fit its buffer are dropped.
func (f *Fleet) Events() <-chan turbine.Event { return f.events }

// Turbines returns every turbine, farm by farm, in device key order.
func (f *Fleet) Turbines() []*turbine.Turbine { return slices.Clone(f.turbines) }

// Turbine returns a turbine by device key.
func (f *Fleet) Turbine(deviceKey string) (*turbine.Turbine, bool) {
	t, ok := f.byKey[deviceKey]
	return t, ok
}

// Gateways returns the Modbus gateways.
func (f *Fleet) Gateways() []*modbus.Gateway { return slices.Clone(f.gateways) }

// Gateway returns a gateway by id.
func (f *Fleet) Gateway(id string) (*modbus.Gateway, bool) {
	g, ok := f.byID[id]
	return g, ok
}

// Handler returns the twin control API (/twins/v1/...).
func (f *Fleet) Handler() http.Handler { return control.New(f, f.log) }
