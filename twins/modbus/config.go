package modbus

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/gale-iot/gale/platform/api/regmap"
)

// Sentinel errors of Config.Validate and Fault.Validate.
var (
	ErrID         = errors.New("gateway needs an id")
	ErrAddr       = errors.New("gateway address must be host:port")
	ErrMaxClients = errors.New("max_clients must be in 1…1000")
	ErrTimeouts   = errors.New("idle_timeout and timeout_hold must be positive")
	ErrNoUnits    = errors.New("gateway has no units")
	ErrFault      = errors.New("invalid gateway fault")
)

// Config configures a gateway twin.
type Config struct {
	// ID identifies the gateway (e.g. GW01).
	ID string `yaml:"id"`
	// Addr is the TCP address to serve on; port 0 picks a free port.
	Addr string `yaml:"addr"`
	// MaxClients is the number of concurrent connections (default 10).
	MaxClients int `yaml:"max_clients"`
	// IdleTimeout closes idle connections (default 2m).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// TimeoutHold is how long a request goes unanswered under the timeout
	// fault before the connection is dropped (default 10s).
	TimeoutHold time.Duration `yaml:"timeout_hold"`
	// Units are the devices behind the gateway.
	Units []regmap.Unit `yaml:"units"`
}

// Default fills unset fields.
func (c *Config) Default() {
	c.MaxClients = cmp.Or(c.MaxClients, 10)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, 2*time.Minute)
	c.TimeoutHold = cmp.Or(c.TimeoutHold, 10*time.Second)
}

// Validate checks the gateway and that every unit's register map is shipped.
func (c Config) Validate() error {
	if c.ID == "" {
		return ErrID
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("%w: %q", ErrAddr, c.Addr)
	}
	if c.MaxClients < 1 || c.MaxClients > 1000 {
		return fmt.Errorf("%w: %d", ErrMaxClients, c.MaxClients)
	}
	if c.IdleTimeout <= 0 || c.TimeoutHold <= 0 {
		return ErrTimeouts
	}
	if len(c.Units) == 0 {
		return ErrNoUnits
	}
	if err := regmap.ValidateUnits(c.Units); err != nil {
		return err
	}
	for _, u := range c.Units {
		if _, err := regmap.Shipped(u.Map); err != nil {
			return fmt.Errorf("%s: %w", u.Device, err)
		}
	}
	return nil
}
