package farm

import (
	"cmp"
	"errors"
	"fmt"

	"github.com/gale-iot/gale/twins/turbine"
	"github.com/gale-iot/gale/twins/wind"
)

// Sentinel errors of Config.Validate.
var (
	ErrSite    = errors.New("farm needs a site name")
	ErrCount   = errors.New("turbine count must be in 1…999")
	ErrRows    = errors.New("rows must be in 1…count")
	ErrSpacing = errors.New("spacing must be in 2…30 rotor diameters")
	ErrPrefix  = errors.New("device prefix must be letters, digits, '-' or '_'")
	ErrMast    = errors.New("met mast key must be letters, digits, '-' or '_'")
)

// Config describes one wind farm: its turbines, their layout and the wind climate.
type Config struct {
	// Site is the site name (asset tree and TSDB label).
	Site string `yaml:"site"`
	// TurbineType is a built-in model: nrel-5mw (default) or onshore-2.3mw.
	TurbineType string `yaml:"turbine_type"`
	// Count is the number of turbines.
	Count int `yaml:"count"`
	// Prefix starts the device keys, numbered from 1 (default WT: WT01, WT02, …).
	Prefix string `yaml:"prefix"`
	// Rows is the number of rows, laid across the prevailing wind (default 1).
	Rows int `yaml:"rows"`
	// RowSpacing is the distance between rows along the prevailing wind, in rotor diameters (default 7).
	RowSpacing float64 `yaml:"row_spacing"`
	// TurbineSpacing is the distance between turbines in a row, in rotor diameters (default 4).
	TurbineSpacing float64 `yaml:"turbine_spacing"`
	// Mast is the device key of the farm's met mast, 3 rotor diameters upwind; empty for none.
	Mast string `yaml:"mast"`
	// Wind is the wind climate.
	Wind wind.Config `yaml:"wind"`
}

// DefaultConfig is the demo farm: 20 NREL 5 MW turbines WT01…WT20 in two rows
// and met mast MM01 at site demo-farm.
func DefaultConfig() Config {
	c := Config{Site: "demo-farm", Count: 20, Rows: 2, Mast: "MM01", Wind: wind.DefaultConfig()}
	c.Default()
	return c
}

// Default fills unset fields.
func (c *Config) Default() {
	c.TurbineType = cmp.Or(c.TurbineType, turbine.NREL5MW().Name)
	c.Prefix = cmp.Or(c.Prefix, "WT")
	c.Rows = cmp.Or(c.Rows, 1)
	c.RowSpacing = cmp.Or(c.RowSpacing, 7)
	c.TurbineSpacing = cmp.Or(c.TurbineSpacing, 4)
	c.Wind.Default()
}

// validKey reports whether s is a usable device key: letters, digits, '-' and '_'.
func validKey(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Validate checks the farm.
func (c Config) Validate() error {
	switch {
	case c.Site == "":
		return ErrSite
	case c.Count < 1 || c.Count > MaxCount:
		return fmt.Errorf("%w: %d", ErrCount, c.Count)
	case c.Rows < 1 || c.Rows > c.Count:
		return fmt.Errorf("%w: %d", ErrRows, c.Rows)
	case !(c.RowSpacing >= 2 && c.RowSpacing <= 30 && c.TurbineSpacing >= 2 && c.TurbineSpacing <= 30):
		return fmt.Errorf("%w: rows %g, turbines %g", ErrSpacing, c.RowSpacing, c.TurbineSpacing)
	case !validKey(c.Prefix):
		return fmt.Errorf("%w: %q", ErrPrefix, c.Prefix)
	case c.Mast != "" && !validKey(c.Mast):
		return fmt.Errorf("%w: %q", ErrMast, c.Mast)
	}
	if _, err := turbine.ModelNamed(c.TurbineType); err != nil {
		return err
	}
	if err := c.Wind.Validate(); err != nil {
		return fmt.Errorf("wind: %w", err)
	}
	return nil
}

// MaxCount is the most turbines a farm has.
const MaxCount = 999

// DeviceKeys returns the turbines' device keys: the prefix and a number from 1,
// at least two digits wide; none when Count is not in 1…MaxCount (Default
// lists keys before Validate has refused such a count).
func (c Config) DeviceKeys() []string {
	if c.Count < 1 || c.Count > MaxCount {
		return nil
	}
	width := len(fmt.Sprint(c.Count))
	if width < 2 {
		width = 2
	}
	keys := make([]string, c.Count)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%0*d", c.Prefix, width, i+1)
	}
	return keys
}
