package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/broker"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/httpapi"
	"github.com/gale-iot/gale/platform/remotewrite"
	"github.com/gale-iot/gale/platform/tsdb"
)

func TestConfigFiles(t *testing.T) {
	testkit.ConfigFiles(t, "testdata/*.yaml", map[string]error{
		"bad-duration.bad.yaml":                 config.ErrSyntax,
		"unknown-field.bad.yaml":                config.ErrSyntax,
		"kafka-sasl-inline-password.bad.yaml":   config.ErrSyntax,
		"cors-origin.bad.yaml":                  httpapi.ErrConfig,
		"read-header-timeout.bad.yaml":          httpapi.ErrConfig,
		"http-tls-key.bad.yaml":                 ErrConfig,
		"no-node-id.bad.yaml":                   ErrConfig,
		"query-timeout-over-write.bad.yaml":     ErrConfig,
		"remote-write-role.bad.yaml":            ErrConfig,
		"max-sample-age-beyond-window.bad.yaml": ErrConfig,
		"kafka-open-embedded.bad.yaml":          bus.ErrConfig,
		"kafka-sasl-mechanism.bad.yaml":         bus.ErrConfig,
		"kafka-retention.bad.yaml":              bus.ErrConfig,
		"kafka-linger.bad.yaml":                 bus.ErrConfig,
		"kafka-retention-bytes.bad.yaml":        bus.ErrConfig,
		"max-concurrent.bad.yaml":               tsdb.ErrConfig,
		"remote-write-header.bad.yaml":          remotewrite.ErrConfig,
		"small-payload.bad.yaml":                broker.ErrConfig,
		"tls-client-auth.bad.yaml":              broker.ErrConfig,
	}, func(_ *testing.T, path string) error {
		_, err := config.Load[Config](path)
		return err
	})
	kept, err := config.Load[Config]("testdata/embedded-retention.good.yaml")
	require.NoError(t, err)
	require.Equal(t, 72*time.Hour, kept.Kafka.EmbeddedRetention)
	require.Equal(t, config.ByteSize(4<<30), kept.Kafka.EmbeddedRetentionBytes)
	cfg, err := config.Load[Config]("testdata/all-in-one.good.yaml")
	require.NoError(t, err)
	require.Equal(t, []string{"kafka:9092"}, cfg.Kafka.Brokers)
	require.Equal(t, 72*time.Hour, cfg.TSDB.OutOfOrderWindow)
	require.Equal(t, cfg.TSDB.OutOfOrderWindow, cfg.MQTT.MaxSampleAge, "the broker refuses what the TSDB would")
	require.Equal(t, "/var/lib/gale/rules", cfg.Rules.Dir)
	require.Empty(t, cfg.Kafka.DataDir, "no embedded Kafka with external brokers")
	require.Len(t, cfg.RemoteWrite, 2)
	require.Equal(t, "mimir", cfg.RemoteWrite[0].Name)
	require.Equal(t, map[string]string{"X-Scope-OrgID": "wind-eu"}, cfg.RemoteWrite[0].Headers)
	require.Equal(t, 30*time.Second, cfg.RemoteWrite[0].MaxBackoff)
	require.Zero(t, cfg.RemoteWrite[1].Timeout, "left to the default")
	cfg, err = config.Load[Config]("testdata/tls.good.yaml")
	require.NoError(t, err)
	require.Equal(t, "optional", cfg.MQTT.TLS.ClientAuth)
	require.Equal(t, "/etc/gale/tls/ca.crt", cfg.MQTT.TLS.ClientCAFile)
	require.True(t, cfg.HTTP.TLS.Enabled())
	_, err = config.Load[Config]("testdata/missing.yaml")
	require.Error(t, err)
}

// TestMaxSampleAge: the broker takes samples as old as the TSDB keeps
// unless the file narrows it; what the file says is kept, never replaced.
func TestMaxSampleAge(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"", DefaultConfig().TSDB.OutOfOrderWindow},
		{"tsdb: {outOfOrderWindow: 72h}", 72 * time.Hour},
		{"tsdb: {outOfOrderWindow: 72h}\nmqtt: {addr: 127.0.0.1:1884}", 72 * time.Hour},
		{"mqtt: {maxSampleAge: 1h}", time.Hour},
		{"tsdb: {outOfOrderWindow: 72h}\nmqtt: {maxSampleAge: 72h}", 72 * time.Hour},
	} {
		cfg, err := parseConfig(tc.yaml)
		require.NoError(t, err, tc.yaml)
		require.Equal(t, tc.want, cfg.MQTT.MaxSampleAge, tc.yaml)
		require.NoError(t, cfg.Complete(), "complete again")
		require.Equal(t, tc.want, cfg.MQTT.MaxSampleAge, "completing again keeps it: %s", tc.yaml)
	}
}

func TestKafkaTrustConfig(t *testing.T) {
	require.Equal(t, "data/cluster.key", mustConfig(t, "testdata/minimal.good.yaml").ClusterKeyFile, "a single node's key is generated in its data dir")
	trust := mustConfig(t, "testdata/kafka-trust.good.yaml")
	require.Equal(t, "/etc/gale/cluster.key", trust.ClusterKeyFile)
	require.Equal(t, "SCRAM-SHA-512", trust.Kafka.SASL.Mechanism)
	require.True(t, trust.Kafka.TLS.On())
	noMechanism, err := parseConfig("kafka: {brokers: [k:9092], sasl: {username: gale, passwordFile: /p}}")
	require.NoError(t, err)
	require.Equal(t, "SCRAM-SHA-512", noMechanism.Kafka.SASL.Mechanism, "the default mechanism")
}

func mustConfig(t *testing.T, path string) Config {
	t.Helper()
	cfg, err := config.Load[Config](path)
	require.NoError(t, err)
	return cfg
}

func TestHTTPAndQueryLimits(t *testing.T) {
	cfg, err := config.Load[Config]("testdata/limits.good.yaml")
	require.NoError(t, err)
	require.Equal(t, 5*time.Second, cfg.HTTP.ReadHeaderTimeout)
	require.Equal(t, 2*time.Minute, cfg.HTTP.WriteTimeout)
	require.Equal(t, int64(1<<20), cfg.HTTP.MaxBodyBytes)
	require.Equal(t, `https://grafana\.example\.com`, cfg.HTTP.CORSOrigin)
	require.Equal(t, time.Minute, cfg.Query.Timeout)
	require.Equal(t, 4, cfg.Query.MaxConcurrent)
	require.Equal(t, 30*time.Second, cfg.Query.DefaultSubqueryStep)

	def := DefaultConfig()
	require.NoError(t, def.Complete())
	require.Greater(t, def.HTTP.WriteTimeout, def.Query.Timeout+def.Query.MaxQueueWait, "the defaults let a query finish before its write deadline")

	_, err = parseConfig("query: {timeout: 2m}\n")
	require.ErrorIs(t, err, ErrConfig)
	require.ErrorContains(t, err, "http.writeTimeout")
}

// parseConfig parses a node config given inline.
func parseConfig(s string) (Config, error) { return config.Parse[Config]("test.yaml", []byte(s)) }
