package twins

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParse parses arbitrary fleet config YAML: an error, or a config that
// validates again, whose every gateway unit is a device of a farm, and that
// parses to the same config once written back as YAML.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	demo, err := yaml.Marshal(DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(demo)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a parsed config does not validate: %v", err)
		}
		kinds := c.kinds()
		for _, g := range c.Gateways {
			for _, u := range g.Units {
				if kinds[u.Device] == "" || u.Map != kinds[u.Device] {
					t.Fatalf("gateway %s: unit %+v is not a farm device", g.ID, u)
				}
			}
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("a valid config written back does not parse: %v\n%s", err, out)
		}
	})
}
