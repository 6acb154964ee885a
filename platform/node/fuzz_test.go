package node

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParseConfig parses arbitrary node config YAML over the defaults: an
// error, or a complete config (every derived path set) that completes
// again unchanged and parses to the same config once written back as YAML.
func FuzzParseConfig(f *testing.F) {
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
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if c.Rules.Dir == "" || c.Rules.RoutesDir == "" || c.TSDB.Dir == "" || len(c.Kafka.Brokers) == 0 && c.Kafka.DataDir == "" {
			t.Fatalf("a complete config lacks a derived path: %+v", c)
		}
		if c.MQTT.MaxSampleAge != c.TSDB.OutOfOrderWindow {
			t.Fatalf("the broker takes samples up to %v old, the TSDB %v", c.MQTT.MaxSampleAge, c.TSDB.OutOfOrderWindow)
		}
		again := c
		if err := again.Complete(); err != nil {
			t.Fatalf("a complete config does not complete again: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := ParseConfig(out); err != nil {
			t.Fatalf("a valid config written back does not parse: %v\n%s", err, out)
		}
	})
}
