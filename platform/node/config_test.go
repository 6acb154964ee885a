package node

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
)

func TestConfigFiles(t *testing.T) {
	testkit.Fixtures(t, "testdata/*.yaml", nil, func(b []byte) error {
		_, err := ParseConfig(b)
		return err
	})
	cfg, err := LoadConfig("testdata/all-in-one.good.yaml")
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
	cfg, err = LoadConfig("testdata/tls.good.yaml")
	require.NoError(t, err)
	require.Equal(t, "optional", cfg.MQTT.TLS.ClientAuth)
	require.Equal(t, "/etc/gale/tls/ca.crt", cfg.MQTT.TLS.ClientCAFile)
	require.True(t, cfg.HTTP.TLS.Enabled())
	_, err = LoadConfig("testdata/missing.yaml")
	require.Error(t, err)
}

func TestKafkaTrustConfig(t *testing.T) {
	require.Equal(t, "data/cluster.key", mustConfig(t, "testdata/minimal.good.yaml").ClusterKeyFile, "a single node's key is generated in its data dir")
	trust := mustConfig(t, "testdata/kafka-trust.good.yaml")
	require.Equal(t, "/etc/gale/cluster.key", trust.ClusterKeyFile)
	require.Equal(t, "SCRAM-SHA-512", trust.Kafka.SASL.Mechanism)
	require.True(t, trust.Kafka.TLS.On())
	noMechanism, err := ParseConfig([]byte("kafka: {brokers: [k:9092], sasl: {username: gale, passwordFile: /p}}"))
	require.NoError(t, err)
	require.Equal(t, "SCRAM-SHA-512", noMechanism.Kafka.SASL.Mechanism, "the default mechanism")
}

func mustConfig(t *testing.T, path string) Config {
	t.Helper()
	cfg, err := LoadConfig(path)
	require.NoError(t, err)
	return cfg
}

func TestHTTPAndQueryLimits(t *testing.T) {
	cfg, err := LoadConfig("testdata/limits.good.yaml")
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

	_, err = ParseConfig([]byte("query: {timeout: 2m}\n"))
	require.ErrorIs(t, err, ErrConfig)
	require.ErrorContains(t, err, "http.writeTimeout")
}
