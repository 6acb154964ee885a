// Package node wires a Gale cloud node: registry, bus, broker, TSDB writer
// and HTTP API, with one Run(ctx) lifecycle.
package node

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"time"

	"github.com/gale-iot/gale/platform/broker"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/httpapi"
	"github.com/gale-iot/gale/platform/pki"
	"github.com/gale-iot/gale/platform/remotewrite"
	"github.com/gale-iot/gale/platform/selfmon"
	"github.com/gale-iot/gale/platform/tsdb"
)

// Config configures a node.
type Config struct {
	// DataDir holds the registry, the TSDB, the embedded Kafka log and admin.token.
	DataDir string `yaml:"dataDir"`
	// NodeID names the node in a cluster and must be unique there: groups read in full by
	// every node are suffixed with it, and a node skips the registry changes it made itself.
	NodeID string `yaml:"nodeID"`
	// Role is what the node does: ingest, process, store or all.
	Role  string         `yaml:"role"`
	HTTP  httpapi.Config `yaml:"http"`
	MQTT  broker.Config  `yaml:"mqtt"`
	Kafka bus.Config     `yaml:"kafka"`
	TSDB  tsdb.Config    `yaml:"tsdb"`
	// Query limits every PromQL query: the query API, the history endpoint and PromQL rules.
	Query tsdb.QueryConfig `yaml:"query"`
	Rules RulesConfig      `yaml:"rules"`
	// SeedDemo, when it has turbines, seeds the demo registry at start
	// (SeedDemo: org, site, shipped products, gateways, turbines, met mast;
	// what exists is kept). In a cluster, give it to one node.
	SeedDemo Demo `yaml:"seedDemo"`
	// Memory is the process's memory budget (GOMEMLIMIT) and GC target (GOGC).
	Memory MemoryConfig `yaml:"memory"`
	// SelfMonitoring stores the node's own metrics in its TSDB (store role), job "gale".
	SelfMonitoring selfmon.Config `yaml:"selfMonitoring"`
	// RemoteWrite lists Prometheus-compatible endpoints a store node ships its telemetry to.
	RemoteWrite []remotewrite.Config `yaml:"remoteWrite"`
	// ClusterKeyFile holds the cluster key (at least 32 bytes; 64 hex digits
	// when generated) from which the node derives the keys that authenticate
	// the registry change log and seal device secrets. Every node of a
	// cluster needs the same file. Empty: DataDir/cluster.key, generated
	// (mode 0600) when missing, which suits a single node.
	ClusterKeyFile string `yaml:"clusterKeyFile"`
}

// RulesConfig configures the event engine.
type RulesConfig struct {
	// Dir holds the streaming rule files (*.yaml); the shipped rules are installed there when it has none.
	Dir string `yaml:"dir"`
	// RoutesDir holds the rule engine's route files (*.yaml).
	RoutesDir string `yaml:"routesDir"`
	// CheckpointEvery is how often the engine's state is saved and its offsets committed.
	CheckpointEvery time.Duration `yaml:"checkpointEvery"`
	// NoDataGrace is how far behind the wall clock event time may lag before silent points count as no data.
	NoDataGrace time.Duration `yaml:"noDataGrace"`
}

// DefaultConfig returns the single-machine defaults. mqtt.maxSampleAge is
// left zero: Complete makes it the TSDB's out-of-order window.
func DefaultConfig() Config {
	mqtt := broker.DefaultConfig()
	mqtt.MaxSampleAge = 0
	return Config{
		DataDir: "data",
		NodeID:  "local",
		Role:    RoleAll,
		HTTP:    httpapi.DefaultConfig(),
		MQTT:    mqtt,
		Kafka:   bus.DefaultConfig(),
		TSDB:    tsdb.DefaultConfig(),
		Query:   tsdb.DefaultQueryConfig(),
		Rules:   RulesConfig{CheckpointEvery: 5 * time.Second, NoDataGrace: 30 * time.Second},
	}
}

// UnmarshalYAML starts from DefaultConfig: a key the file leaves out keeps its default.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultConfig()
	type plain Config
	return unmarshal((*plain)(c))
}

// DevTLS makes (or keeps) a development CA and a server certificate for
// hosts (plus 127.0.0.1, ::1, localhost and the hosts of the listen
// addresses) under DataDir/tls, as gale up --tls does, and serves MQTT
// (asking client certificates per clientAuth, verified against the CA) and
// HTTP over TLS with them. Clients trust the returned files' CA.
func (c *Config) DevTLS(hosts []string, clientAuth string, now time.Time) (pki.DevFiles, error) {
	for _, addr := range []string{c.HTTP.Addr, c.MQTT.Addr} {
		if h, _, err := net.SplitHostPort(addr); err == nil {
			hosts = append(hosts, h)
		}
	}
	files, err := pki.EnsureDev(filepath.Join(c.DataDir, "tls"), hosts, now)
	if err != nil {
		return files, fmt.Errorf("development TLS: %w", err)
	}
	c.MQTT.TLS = pki.ServerConfig{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA, ClientAuth: clientAuth}
	c.HTTP.TLS = pki.ServerConfig{CertFile: files.Cert, KeyFile: files.Key}
	return files, nil
}

// Roles of a node (the design's Cluster section).
const (
	RoleAll     = "all"     // everything: one machine
	RoleIngest  = "ingest"  // MQTT broker, produce to Kafka, command delivery
	RoleProcess = "process" // event engine, routes
	RoleStore   = "store"   // TSDB writer, query API, PromQL rules
)

// DefaultClusterKeyFile is the cluster key's file name in the data dir when none is configured.
const DefaultClusterKeyFile = "cluster.key"

// ErrConfig is wrapped by node-level configuration errors.
var ErrConfig = errors.New("invalid node config")

// Complete fills paths derived from DataDir and validates everything.
func (c *Config) Complete() error {
	if c.DataDir == "" {
		return fmt.Errorf("%w: dataDir is empty", ErrConfig)
	}
	if c.NodeID == "" {
		return fmt.Errorf("%w: nodeID is empty", ErrConfig)
	}
	if _, ok := roles[c.Role]; !ok {
		return fmt.Errorf("%w: role %q: want ingest, process, store or all", ErrConfig, c.Role)
	}
	// A query must be able to finish (after waiting for a slot) before its answer's write deadline.
	if c.HTTP.WriteTimeout <= c.Query.Timeout+c.Query.MaxQueueWait {
		return fmt.Errorf("%w: http.writeTimeout (%s) must exceed query.timeout plus query.maxQueueWait (%s)",
			ErrConfig, c.HTTP.WriteTimeout, c.Query.Timeout+c.Query.MaxQueueWait)
	}
	if err := c.HTTP.TLS.Validate(); err != nil {
		return fmt.Errorf("%w: http.tls: %w", ErrConfig, err)
	}
	if d := c.SeedDemo; d.Turbines < 0 || d.Direct < 0 || d.Turbines+d.Direct > 1000 {
		return fmt.Errorf("%w: seedDemo %+v: want 0 to 1000 turbines in all", ErrConfig, d)
	}
	c.Rules.Dir = cmp.Or(c.Rules.Dir, filepath.Join(c.DataDir, "rules"))
	c.Rules.RoutesDir = cmp.Or(c.Rules.RoutesDir, filepath.Join(c.DataDir, "routes"))
	if c.Rules.CheckpointEvery <= 0 || c.Rules.NoDataGrace <= 0 {
		return fmt.Errorf("%w: rules.checkpointEvery and rules.noDataGrace must be positive", ErrConfig)
	}
	c.ClusterKeyFile = cmp.Or(c.ClusterKeyFile, filepath.Join(c.DataDir, DefaultClusterKeyFile))
	c.TSDB.Dir = cmp.Or(c.TSDB.Dir, filepath.Join(c.DataDir, "tsdb"))
	if len(c.Kafka.Brokers) == 0 && c.Kafka.DataDir == "" {
		c.Kafka.DataDir = filepath.Join(c.DataDir, "kafka")
	}
	c.Kafka.SASL.Complete()
	// A sample older than the TSDB's out-of-order window would be refused by
	// the TSDB after being acknowledged, so the broker refuses it up front:
	// unless the file narrows it, the broker takes what the TSDB takes.
	if c.MQTT.MaxSampleAge == 0 {
		c.MQTT.MaxSampleAge = c.TSDB.OutOfOrderWindow
	} else if c.MQTT.MaxSampleAge > c.TSDB.OutOfOrderWindow {
		return fmt.Errorf("%w: mqtt.maxSampleAge (%s) is beyond tsdb.outOfOrderWindow (%s): the TSDB would drop samples the broker acknowledged",
			ErrConfig, c.MQTT.MaxSampleAge, c.TSDB.OutOfOrderWindow)
	}
	for _, err := range []error{c.Memory.Validate(), c.HTTP.Validate(), c.Query.Validate(), c.MQTT.Validate(), c.Kafka.Validate(), c.TSDB.Validate()} {
		if err != nil {
			return err
		}
	}
	return c.validateRemoteWrite()
}

// validateRemoteWrite checks the endpoints, whose names must be unique as
// they name consumer groups and label metrics, and that the node stores.
func (c Config) validateRemoteWrite() error {
	if len(c.RemoteWrite) > 0 && !slices.Contains(roles[c.Role], modRemoteWrite) {
		return fmt.Errorf("%w: remoteWrite needs role store or all, not %s", ErrConfig, c.Role)
	}
	names := map[string]bool{}
	for _, rw := range c.RemoteWrite {
		if err := rw.Validate(); err != nil {
			return fmt.Errorf("remoteWrite: %w", err)
		}
		if names[rw.Name] {
			return fmt.Errorf("%w: remoteWrite: name %q is used twice", ErrConfig, rw.Name)
		}
		names[rw.Name] = true
	}
	return nil
}
