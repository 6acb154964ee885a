package node_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/registry"
)

const kafkaPassword = "kafka-pass-0123456789"

// saslConfig returns a node config whose embedded Kafka requires SCRAM.
func saslConfig(t *testing.T) node.Config {
	cfg := nodetest.Config(t)
	pass := filepath.Join(t.TempDir(), "kafka.pass")
	require.NoError(t, os.WriteFile(pass, []byte(kafkaPassword+"\n"), 0o600))
	cfg.Kafka.SASL = bus.SASLConfig{Mechanism: bus.ScramSHA512, Username: "gale", PasswordFile: pass}
	return cfg
}

// kafkaClient produces to and reads from a node's Kafka as an outsider
// would: with kcat when it is installed, else with kafka-go.
type kafkaClient struct {
	t      *testing.T
	broker string
	kcat   string
	sasl   bool
}

func (k kafkaClient) kcatArgs(args ...string) []string {
	base := []string{"-b", k.broker, "-m", "5"}
	if k.sasl {
		base = append(base, "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-512",
			"-X", "sasl.username=gale", "-X", "sasl.password="+kafkaPassword)
	}
	return append(base, args...)
}

func (k kafkaClient) config() bus.Config {
	cfg := bus.DefaultConfig()
	if k.sasl {
		pass := filepath.Join(k.t.TempDir(), "pass")
		require.NoError(k.t, os.WriteFile(pass, []byte(kafkaPassword), 0o600))
		cfg.SASL = bus.SASLConfig{Mechanism: bus.ScramSHA512, Username: "gale", PasswordFile: pass}
	}
	return cfg
}

// produce writes value under key to topic.
func (k kafkaClient) produce(topic, key string, value []byte) error {
	if k.kcat != "" {
		file := filepath.Join(k.t.TempDir(), "record")
		require.NoError(k.t, os.WriteFile(file, value, 0o600))
		out, err := exec.Command(k.kcat, k.kcatArgs("-P", "-t", topic, "-k", key, file)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kcat: %w: %s", err, out)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := bus.NewSyncProducer([]string{k.broker}, k.config())
	defer p.Close()
	return p.Produce(ctx, bus.Message{Topic: topic, Key: []byte(key), Value: value})
}

// readAll returns every value of topic.
func (k kafkaClient) readAll(topic string) []byte {
	if k.kcat != "" {
		out, err := exec.Command(k.kcat, k.kcatArgs("-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k %s\n")...).Output()
		require.NoError(k.t, err)
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := bus.ReadTopic(ctx, []string{k.broker}, k.config(), topic)
	require.NoError(k.t, err)
	var all []byte
	for _, m := range msgs {
		all = append(all, m.Value...)
	}
	return all
}

func newKafkaClient(t *testing.T, broker string, sasl bool) kafkaClient {
	k := kafkaClient{t: t, broker: broker, sasl: sasl}
	if path, err := exec.LookPath("kcat"); err == nil {
		k.kcat = path
	}
	return k
}

// TestForgedRegistryRecordsChangeNothing writes registry records without
// the cluster key straight to Kafka — as anyone who reaches it could: a
// local user on gale up's loopback Kafka (kcat when installed), a holder of
// the cluster's Kafka credentials with SASL on — and checks that a forged
// admin token does not work, that every forged record is counted, and
// that the node keeps following the log. With SASL on, unauthenticated
// clients are refused; either way no reader of the log sees a device secret.
func TestForgedRegistryRecordsChangeNothing(t *testing.T) {
	for _, sasl := range []bool{false, true} {
		t.Run(map[bool]string{false: "loopback without sasl", true: "sasl"}[sasl], func(t *testing.T) {
			cfg := nodetest.Config(t)
			if sasl {
				cfg = saslConfig(t)
			}
			h := nodetest.Start(t, cfg)
			h.SetupProduct(t, "sensor", "Temp")
			d := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "test-site"})
			broker := h.Node.KafkaAddrs()[0]

			k := newKafkaClient(t, broker, false)
			if sasl {
				require.Error(t, k.produce(api.TopicRegistry, "x", []byte("x")), "an unauthenticated client is refused")
				if k.kcat != "" {
					out, err := exec.Command(k.kcat, k.kcatArgs("-L")...).CombinedOutput()
					require.Error(t, err, "kcat -L without SASL: %s", out)
				}
				k.sasl = true
			}
			forged := "forged-admin-token-0123456789"
			sum := sha256.Sum256([]byte(forged))
			hash := hex.EncodeToString(sum[:])
			bare, err := json.Marshal(api.RegistryChange{Kind: api.ChangeToken, Key: hash, TokenName: "admin", Origin: "elsewhere"})
			require.NoError(t, err)
			shaped := append(append([]byte{registry.ChangeRecordVersion}, bytes.Repeat([]byte{0x5a}, 32)...), bare...)
			require.NoError(t, k.produce(api.TopicRegistry, "token/"+hash, bare))
			require.NoError(t, k.produce(api.TopicRegistry, "token/"+hash, shaped))

			require.Eventually(t, func() bool {
				return h.Metric(t, `gale_registry_changes_rejected_total{reason="malformed"}`) == 1 &&
					h.Metric(t, `gale_registry_changes_rejected_total{reason="bad_mac"}`) == 1
			}, 15*time.Second, 50*time.Millisecond, "both forged records are refused and counted")
			require.Equal(t, 0.0, h.Metric(t, `gale_registry_changes_rejected_total{reason="not_applied"}`))
			require.False(t, h.Node.Registry.ValidToken(forged))
			require.Equal(t, http.StatusUnauthorized, h.As(t, forged).Do(t, http.MethodGet, "/api/v1/devices", nil, nil), "the forged token opens nothing")
			require.Eventually(t, func() bool {
				return h.Metric(t, `gale_kafka_consumer_lag{group="gale-registry-local"}`) == 0
			}, 15*time.Second, 50*time.Millisecond, "the registry consumer committed past the forged records")

			log := k.readAll(api.TopicRegistry)
			require.Contains(t, string(log), "d1", "the change log was read")
			require.NotContains(t, string(log), d.Secret, "no device secret in the clear on Kafka")
			for _, f := range []string{"registry.db", "registry.db-wal"} {
				b, err := os.ReadFile(filepath.Join(h.Config.DataDir, f))
				if err == nil {
					require.NotContains(t, string(b), d.Secret, "no device secret in the clear in %s", f)
				}
			}
		})
	}
}

// TestDataDirIsTheOwnersOnly starts a node on a data dir an older version
// left readable by all: afterwards every folder under it is 0700 and every file 0600.
func TestDataDirIsTheOwnersOnly(t *testing.T) {
	cfg := nodetest.Config(t)
	require.NoError(t, os.Chmod(cfg.DataDir, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(cfg.DataDir, "tsdb"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(cfg.DataDir, "admin.token"), []byte("stale\n"), 0o644))
	h := nodetest.Start(t, cfg)
	h.SetupProduct(t, "sensor", "Temp")
	h.Stop()

	seen := map[string]bool{}
	require.NoError(t, filepath.WalkDir(cfg.DataDir, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := d.Info()
		require.NoError(t, err)
		rel, _ := filepath.Rel(cfg.DataDir, path)
		seen[rel] = true
		if d.IsDir() {
			require.Equal(t, os.FileMode(0o700), info.Mode().Perm(), "folder %s", rel)
		} else if info.Mode().IsRegular() {
			require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "file %s", rel)
		}
		return nil
	}))
	for _, p := range []string{".", "registry.db", "tsdb", "kafka", "admin.token", "cluster.key", "rules"} {
		require.True(t, seen[p], "%s is in the data dir", p)
	}
}

// TestChangeNotOnTheLogIsRefused stops the Kafka a node uses: a registry
// change then answers 5xx with the reason and is not kept; a change over
// the size limits answers 400 before anything is stored.
func TestChangeNotOnTheLogIsRefused(t *testing.T) {
	k, err := bus.StartEmbedded("127.0.0.1:0", "", false, 2, api.Topics()...)
	require.NoError(t, err)
	cfg := nodetest.Config(t)
	cfg.Kafka.Brokers = k.Addrs()
	h := nodetest.Start(t, cfg)
	h.SetupProduct(t, "sensor", "Temp")

	var e map[string]string
	big := map[string]any{"blob": strings.Repeat("x", registry.MaxAttributesBytes)}
	require.Equal(t, http.StatusBadRequest, h.Do(t, http.MethodPost, "/api/v1/devices",
		api.Device{ProductKey: "sensor", DeviceKey: "big", Site: "test-site", Attributes: big}, &e))
	require.Contains(t, e["error"], "attributes")
	require.Equal(t, http.StatusNotFound, h.Do(t, http.MethodGet, "/api/v1/devices/sensor/big", nil, nil))

	k.Close()
	status := h.Do(t, http.MethodPost, "/api/v1/devices", api.Device{ProductKey: "sensor", DeviceKey: "lost", Site: "test-site"}, &e)
	require.Equal(t, http.StatusServiceUnavailable, status, "%v", e)
	require.Contains(t, e["error"], "not on the change log")
	_, ok := h.Node.Registry.Device("sensor", "lost")
	require.False(t, ok, "the device is not kept")
	require.Equal(t, http.StatusNotFound, h.Do(t, http.MethodGet, "/api/v1/devices/sensor/lost", nil, nil))
}

func TestEmbeddedKafkaStaysOnLoopbackWithoutSASL(t *testing.T) {
	testkit.Edits(t, node.DefaultConfig, (*node.Config).Complete, []testkit.Edit[node.Config]{
		testkit.Case("loopback", func(*node.Config) {}, nil),
		testkit.Case("all interfaces", func(c *node.Config) { c.Kafka.EmbeddedAddr = "0.0.0.0:9092" }, bus.ErrOpenEmbedded),
		testkit.Case("all interfaces with sasl", func(c *node.Config) {
			c.Kafka.EmbeddedAddr = "0.0.0.0:9092"
			c.Kafka.SASL = bus.SASLConfig{Mechanism: bus.ScramSHA256, Username: "gale", PasswordFile: "/run/secrets/kafka"}
		}, nil),
	})
}
