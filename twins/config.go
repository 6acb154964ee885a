package twins

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/twins/clock"
	"github.com/gale-iot/gale/twins/farm"
	"github.com/gale-iot/gale/twins/modbus"
	"github.com/gale-iot/gale/twins/turbine"
)

// Sentinel errors of Config.Validate.
var (
	ErrStep             = errors.New("step must be between 10ms and 1m")
	ErrSpeed            = errors.New("speed must be between 1 and 10000")
	ErrNoFarms          = errors.New("fleet has no farms")
	ErrDuplicateDevice  = errors.New("device key used twice")
	ErrUnknownDevice    = errors.New("unknown device")
	ErrDuplicateGateway = errors.New("gateway id or address used twice")
	ErrUnknownGateway   = errors.New("unknown gateway")
	ErrMapKind          = errors.New("register map does not fit the device")
	ErrScheduledFault   = errors.New("invalid scheduled fault")
)

// Product keys of the twin devices.
const (
	ProductTurbine = "wind-turbine"
	ProductMast    = "met-mast"
)

// Config is the fleet configuration (gale twins --config FILE).
type Config struct {
	// Seed seeds every random stream of the fleet.
	Seed uint64 `yaml:"seed"`
	// Start is the sim time the fleet starts at; empty: the wall clock at New.
	Start time.Time `yaml:"start"`
	// Step is the physics step in sim time (default 1s).
	Step time.Duration `yaml:"step"`
	// Speed is the clock's initial speed factor (default 1).
	Speed float64 `yaml:"speed"`
	// Farms are the wind farms.
	Farms []farm.Config `yaml:"farms"`
	// Gateways are the Modbus TCP gateways and the devices behind them. A
	// unit's map defaults to the device's product and its unit id to its
	// position (from 1). Devices behind no gateway connect directly.
	Gateways []modbus.Config `yaml:"gateways"`
	// Faults are injected and cleared at sim times.
	Faults []ScheduledFault `yaml:"faults"`
}

// ScheduledFault injects (or clears) a turbine fault or a gateway fault At
// sim time after the start. A turbine fault names the Device and a turbine
// fault; a gateway fault names the Gateway and spells the fault as the
// control API does (fault, unit, code, clients, order). Clear ends the
// fault instead (for a gateway, an empty fault clears every kind).
type ScheduledFault struct {
	// At is the sim time after the start.
	At time.Duration `yaml:"at"`
	// Device is the turbine's device key.
	Device string `yaml:"device,omitempty"`
	// Gateway is the gateway id.
	Gateway string `yaml:"gateway,omitempty"`
	// Clear ends the fault instead of injecting it.
	Clear bool `yaml:"clear,omitempty"`
	// Fault is the fault; for a turbine only its kind is used.
	modbus.Fault `yaml:",inline"`
}

// DemoConfig is the demo fleet of gale up with n+direct turbines WT01… of
// the demo farm (two rows, met mast MM01, site demo-farm) and seed 1. The
// first n turbines sit ten to a gateway, GW01, GW02, …, on consecutive ports
// from modbusAddr (every gateway on a free port when its port is 0); the
// other direct turbines and MM01 connect directly.
func DemoConfig(n, direct int, modbusAddr string) (Config, error) {
	host, portText, err := net.SplitHostPort(modbusAddr)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %q", modbus.ErrAddr, modbusAddr)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port+(n-1)/10 > 65535 {
		return Config{}, fmt.Errorf("%w: %q", modbus.ErrAddr, modbusAddr)
	}
	fc := farm.DefaultConfig()
	fc.Count, fc.Rows = n+direct, min(2, max(n+direct, 1))
	if n < 0 || direct < 0 {
		return Config{}, fmt.Errorf("%w: %d turbines behind gateways, %d direct", farm.ErrCount, n, direct)
	}
	if err := fc.Validate(); err != nil {
		return Config{}, err
	}
	c := Config{Seed: 1, Farms: []farm.Config{fc}}
	for i, k := range fc.DeviceKeys()[:n] {
		if i%10 == 0 {
			p := port
			if port != 0 {
				p += i / 10
			}
			c.Gateways = append(c.Gateways, modbus.Config{
				ID: fmt.Sprintf("GW%02d", i/10+1), Addr: net.JoinHostPort(host, strconv.Itoa(p))})
		}
		g := &c.Gateways[len(c.Gateways)-1]
		g.Units = append(g.Units, regmap.Unit{Device: k})
	}
	c.Default()
	return c, c.Validate()
}

// DefaultConfig is the demo fleet of gale up: DemoConfig(20, 0, "127.0.0.1:5020"),
// WT01…WT10 behind GW01 on port 5020 and WT11…WT20 behind GW02 on 5021.
func DefaultConfig() Config {
	c, _ := DemoConfig(20, 0, "127.0.0.1:5020") // valid by construction (see the tests)
	return c
}

// Complete fills the defaults of what the file left unset and validates
// the fleet (internal/config.Load reads a fleet config with it).
func (c *Config) Complete() error {
	c.Default()
	return c.Validate()
}

// kinds maps every device key to its product; a key used twice maps to "".
func (c Config) kinds() map[string]string {
	kinds := map[string]string{}
	add := func(k, product string) {
		if _, dup := kinds[k]; dup {
			product = ""
		}
		kinds[k] = product
	}
	for _, f := range c.Farms {
		for _, k := range f.DeviceKeys() {
			add(k, ProductTurbine)
		}
		if f.Mast != "" {
			add(f.Mast, ProductMast)
		}
	}
	return kinds
}

// Default fills unset fields of the fleet, its farms and its gateways.
func (c *Config) Default() {
	c.Step = cmp.Or(c.Step, time.Second)
	c.Speed = cmp.Or(c.Speed, 1)
	for i := range c.Farms {
		c.Farms[i].Default()
	}
	kinds := c.kinds()
	for i := range c.Gateways {
		g := &c.Gateways[i]
		g.Default()
		for j := range g.Units {
			u := &g.Units[j]
			u.ID = cmp.Or(u.ID, uint8(min(j+1, 255)))
			u.Map = cmp.Or(u.Map, kinds[u.Device]) // the product key names its register map
		}
	}
}

// Validate checks the fleet: ranges, unique device keys, gateways that know
// their devices, and scheduled faults that name real targets.
func (c Config) Validate() error {
	if c.Step < 10*time.Millisecond || c.Step > time.Minute {
		return fmt.Errorf("%w: %v", ErrStep, c.Step)
	}
	if c.Speed < clock.MinSpeed || c.Speed > clock.MaxSpeed {
		return fmt.Errorf("%w: %g", ErrSpeed, c.Speed)
	}
	if len(c.Farms) == 0 {
		return ErrNoFarms
	}
	for _, f := range c.Farms {
		if err := f.Validate(); err != nil {
			return fmt.Errorf("farm %q: %w", f.Site, err)
		}
	}
	kinds := c.kinds()
	for k, product := range kinds {
		if product == "" {
			return fmt.Errorf("%w: %s", ErrDuplicateDevice, k)
		}
	}
	gateways := map[string]bool{}
	addrs := map[string]bool{}
	behind := map[string]string{}
	for _, g := range c.Gateways {
		for _, u := range g.Units {
			if _, ok := kinds[u.Device]; !ok {
				return fmt.Errorf("gateway %s: %w: %s", g.ID, ErrUnknownDevice, u.Device)
			}
		}
		if err := g.Validate(); err != nil {
			return fmt.Errorf("gateway %q: %w", g.ID, err)
		}
		if _, port, _ := net.SplitHostPort(g.Addr); gateways[g.ID] || (port != "0" && addrs[g.Addr]) {
			return fmt.Errorf("%w: %s (%s)", ErrDuplicateGateway, g.ID, g.Addr)
		}
		gateways[g.ID], addrs[g.Addr] = true, true
		for _, u := range g.Units {
			product := kinds[u.Device]
			switch {
			case behind[u.Device] != "":
				return fmt.Errorf("%w: %s behind %s and %s", ErrDuplicateDevice, u.Device, behind[u.Device], g.ID)
			case u.Map != product:
				return fmt.Errorf("gateway %s: %w: %s is a %s, map %s", g.ID, ErrMapKind, u.Device, product, u.Map)
			}
			behind[u.Device] = g.ID
		}
	}
	for i, f := range c.Faults {
		if err := f.validate(kinds, gateways); err != nil {
			return fmt.Errorf("fault %d: %w", i+1, err)
		}
	}
	return nil
}

func (f ScheduledFault) validate(kinds map[string]string, gateways map[string]bool) error {
	switch {
	case f.At < 0:
		return fmt.Errorf("%w: negative time %v", ErrScheduledFault, f.At)
	case (f.Device == "") == (f.Gateway == ""):
		return fmt.Errorf("%w: name either a device or a gateway", ErrScheduledFault)
	case f.Device != "":
		if kinds[f.Device] != ProductTurbine {
			return fmt.Errorf("%w: %w: no turbine %q", ErrScheduledFault, ErrUnknownDevice, f.Device)
		}
		if f.Unit != 0 || f.Code != 0 || f.Clients != 0 || f.Order != "" {
			return fmt.Errorf("%w: unit, code, clients and order are for gateway faults", ErrScheduledFault)
		}
		if _, err := turbine.ParseFault(string(f.Kind)); err != nil {
			return fmt.Errorf("%w: %w", ErrScheduledFault, err)
		}
	default:
		if !gateways[f.Gateway] {
			return fmt.Errorf("%w: %w: %q", ErrScheduledFault, ErrUnknownGateway, f.Gateway)
		}
		if f.Clear && f.Kind == "" {
			return nil
		}
		if err := f.Fault.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrScheduledFault, err)
		}
	}
	return nil
}
