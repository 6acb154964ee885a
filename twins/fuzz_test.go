package twins

import (
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/platform/api/fuzzinput"
)

// FuzzParse parses arbitrary fleet config YAML: an error, or a config that
// validates again, whose every gateway unit is a device of a farm, and that
// parses again once written back as YAML.
func FuzzParse(f *testing.F) {
	fuzzinput.Seed(f, "testdata/*.yaml")
	demo, err := yaml.Marshal(DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(demo)
	fuzzinput.Validated(f, func(b []byte) (Config, error) { return config.Parse[Config]("fuzz.yaml", b) }, func(t *testing.T, c Config) {
		kinds := c.kinds()
		for _, g := range c.Gateways {
			for _, u := range g.Units {
				if kinds[u.Device] == "" || u.Map != kinds[u.Device] {
					t.Fatalf("gateway %s: unit %+v is not a farm device", g.ID, u)
				}
			}
		}
	})
}
