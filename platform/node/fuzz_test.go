package node

import (
	"testing"

	"github.com/gale-iot/gale/platform/api/fuzzinput"
)

// FuzzParseConfig parses arbitrary node config YAML over the defaults: an
// error, or a complete config (every derived path set, no sample taken that
// the TSDB would drop) that completes
// again and parses again once written back as YAML.
func FuzzParseConfig(f *testing.F) {
	fuzzinput.Seed(f, "testdata/*.yaml")
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(string(data))
		if err != nil {
			return
		}
		if c.Rules.Dir == "" || c.Rules.RoutesDir == "" || c.TSDB.Dir == "" || len(c.Kafka.Brokers) == 0 && c.Kafka.DataDir == "" {
			t.Fatalf("a complete config lacks a derived path: %+v", c)
		}
		if c.MQTT.MaxSampleAge > c.TSDB.OutOfOrderWindow {
			t.Fatalf("the broker takes samples up to %v old, the TSDB %v", c.MQTT.MaxSampleAge, c.TSDB.OutOfOrderWindow)
		}
		again := c
		if err := again.Complete(); err != nil {
			t.Fatalf("a complete config does not complete again: %v", err)
		}
		fuzzinput.Reparse(t, c, func(b []byte) error { _, err := parseConfig(string(b)); return err })
	})
}
