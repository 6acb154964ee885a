package broker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/internal/testkit"
)

func TestConfigFiles(t *testing.T) {
	testkit.Fixtures(t, "testdata/*.yaml", ErrConfig, func(b []byte) error {
		cfg := DefaultConfig()
		require.NoError(t, config.Decode("broker config", b, &cfg))
		return cfg.Validate()
	})
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{name: "defaults", mutate: func(*Config) {}, ok: true},
		{name: "no caps", mutate: func(c *Config) { c.MaxConnections, c.MaxConnectionsPerIP = 0, 0 }, ok: true},
		{name: "back-off off", mutate: func(c *Config) { c.LoginBackoff = Backoff{} }, ok: true},
		{name: "negative skew", mutate: func(c *Config) { c.LoginSkew = -time.Second }},
		{name: "no connect timeout", mutate: func(c *Config) { c.ConnectTimeout = 0 }},
		{name: "tiny connect packet", mutate: func(c *Config) { c.MaxConnectPacket = 100 }},
		{name: "negative caps", mutate: func(c *Config) { c.MaxConnectionsPerIP = -1 }},
		{name: "short client ids", mutate: func(c *Config) { c.MaxClientID = 10 }},
		{name: "tiny read buffer", mutate: func(c *Config) { c.ReadBufferSize = 16 }},
		{name: "huge write buffer", mutate: func(c *Config) { c.WriteBufferSize = 2 << 20 }},
		{name: "no pending writes", mutate: func(c *Config) { c.MaxPendingWrites = 0 }},
		{name: "back-off without ban time", mutate: func(c *Config) { c.LoginBackoff.BanTime = 0 }},
		{name: "negative failures", mutate: func(c *Config) { c.LoginBackoff.MaxFailuresPerIP = -1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mutate(&cfg)
			if c.ok {
				require.NoError(t, cfg.Validate())
				return
			}
			require.ErrorIs(t, cfg.Validate(), ErrConfig)
		})
	}
}
