package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"encoding/json"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/prometheus/storage"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/audit"
	"github.com/gale-iot/gale/platform/broker"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/command"
	"github.com/gale-iot/gale/platform/httpapi"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/remotewrite"
	"github.com/gale-iot/gale/platform/rules"
	"github.com/gale-iot/gale/platform/selfmon"
	"github.com/gale-iot/gale/platform/tsdb"
)

// Consumer groups of the node's Kafka readers. Groups suffixed with the node
// id are read by every node in full (store replicas, command delivery, the
// registry change log); the rules group is shared by the process nodes.
const (
	TSDBConsumerGroup     = "gale-tsdb"
	RulesConsumerGroup    = "gale-rules"
	CommandsConsumerGroup = "gale-commands"
	RegistryConsumerGroup = "gale-registry"
	// RemoteWriteConsumerGroup is suffixed with the node id and the endpoint's name.
	RemoteWriteConsumerGroup = "gale-remotewrite"
)

// Node is a running cloud node. Build it with New, start it with Run.
type Node struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	Registry *registry.Registry
	// TokenFile is where the admin token was written.
	TokenFile string

	kafka    *bus.Embedded
	brokers  []string
	follower *registry.Follower
	db       tsdbCloser
	engine   *tsdb.Engine
	producer *bus.Producer
	broker   *broker.Broker
	rules    rules.Set
	http     *httpapi.Server
	audit    *audit.Log
	runners  []func(context.Context) error
	ready    atomic.Bool
	// kafkaDown is why Kafka was unreachable at the last two checks (nil: reachable).
	kafkaDown atomic.Pointer[error]
	// ingest carries device requests from the broker to Kafka, acknowledged asynchronously.
	ingest *bus.AsyncProducer
}

type tsdbCloser interface{ Close() error }

// New opens the node's stores, binds its listeners and prepares the
// components of its role. extra mounts more HTTP handlers (e.g. the twin
// control API) behind authentication.
func New(ctx context.Context, cfg Config, log *slog.Logger, extra map[string]http.Handler) (n *Node, err error) {
	if err := cfg.Complete(); err != nil {
		return nil, err
	}
	if err := cfg.Kafka.LoadCredentials(); err != nil {
		return nil, err
	}
	n = &Node{cfg: cfg, log: log.With("node", cfg.NodeID), reg: prometheus.NewRegistry()}
	log = n.log
	memory := ApplyMemory(cfg.Memory, log)
	n.runners = append(n.runners, func(ctx context.Context) error { return memory.TuneGC(ctx, time.Second) })
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	// An existing data dir of an older version may be readable by all.
	if err := SecureDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	keys, err := n.clusterKeys()
	if err != nil {
		return nil, err
	}
	if n.Registry, err = registry.Open(filepath.Join(cfg.DataDir, "registry.db"), registry.WithKeys(keys)); err != nil {
		return nil, err
	}
	n.brokers = cfg.Kafka.Brokers
	if len(n.brokers) == 0 {
		if n.kafka, err = startEmbedded(cfg.Kafka); err != nil {
			return nil, err
		}
		n.brokers = n.kafka.Addrs()
	}
	// The registry change log is ordered: a device's change must not overtake its product's.
	n.producer = bus.NewProducer(n.brokers, cfg.Kafka, api.TopicRegistry)
	n.runners = append(n.runners, n.watchKafka)

	// The registry is shared through its change log: every local change is
	// announced on gale.registry, and every node applies every change.
	// Its records are authenticated with the cluster key and carry device
	// secrets sealed; records without a valid MAC change nothing.
	n.Registry.SetPublisher(cfg.NodeID, func(ctx context.Context, c api.RegistryChange) error {
		b, err := keys.SealChange(c)
		if err != nil {
			return err
		}
		return n.producer.Produce(ctx, kafka.Message{Topic: api.TopicRegistry, Key: registry.ChangeKey(c), Value: b})
	})
	n.follower = registry.NewFollower(n.Registry, keys, log.With("component", "registry"), n.reg)
	n.consume(RegistryConsumerGroup+"-"+cfg.NodeID, []string{api.TopicRegistry}, n.applyRegistry)
	if n.TokenFile, err = ensureAdminToken(ctx, n.Registry, cfg.DataDir); err != nil {
		return nil, err
	}
	if cfg.SeedDemo != (Demo{}) {
		if err := SeedDemo(ctx, n.Registry, cfg.SeedDemo); err != nil {
			return nil, err
		}
	}

	if n.audit, err = audit.Open(filepath.Join(cfg.DataDir, "audit.db"), audit.DefaultMaxEntries); err != nil {
		return nil, err
	}
	deps := httpapi.Deps{Registry: n.Registry, Gatherer: n.reg, Ready: n.readiness, Extra: extra, Audit: n.audit}
	var commands *command.Dispatcher
	var selfStore storage.Appendable // the TSDB self-monitoring writes to (store role)
	if cfg.has(RoleIngest) {
		n.ingest = bus.NewAsyncProducer(n.brokers, cfg.Kafka)
		if n.broker, err = broker.New(cfg.MQTT, n.Registry, n.ingest, log.With("component", "broker"), n.reg); err != nil {
			return nil, err
		}
		commands = command.New(n.Registry, n.broker, n.producer, log.With("component", "command"), n.reg)
		n.broker.SetListener(commands)
		n.Registry.WatchDevices(n.broker.DeviceChanged)
		n.consume(CommandsConsumerGroup+"-"+cfg.NodeID, []string{api.TopicCommands}, commands.Handle)
		n.runners = append(n.runners, n.broker.Run, commands.Run)
		deps.Commands = commands
	}
	if cfg.has(RoleStore) {
		db, err := tsdb.Open(cfg.TSDB, log, n.reg)
		if err != nil {
			return nil, err
		}
		n.db, selfStore = db, db
		latest := ingest.NewLatest()
		if err := latest.Restore(ctx, db, time.Now().Add(-cfg.TSDB.OutOfOrderWindow)); err != nil {
			return nil, err
		}
		writer := ingest.NewWriter(db, latest, log.With("component", "ingest"), n.reg)
		n.consume(TSDBConsumerGroup+"-"+cfg.NodeID, []string{api.TopicTelemetry}, writer.Handle)
		// Each endpoint reads gale.telemetry in a group of its own, so a slow or
		// dead endpoint holds back only itself, never the local TSDB.
		for _, rc := range cfg.RemoteWrite {
			rw, err := remotewrite.New(rc, log.With("component", "remotewrite", "endpoint", rc.Name), n.reg)
			if err != nil {
				return nil, err
			}
			n.consume(RemoteWriteConsumerGroup+"-"+cfg.NodeID+"-"+rc.Name, []string{api.TopicTelemetry}, rw.Handle)
		}
		if err := rules.InstallShipped(cfg.Rules.Dir); err != nil {
			return nil, err
		}
		// One engine for the query API, the history endpoint and PromQL rules: they share its limits.
		if n.engine, err = tsdb.NewEngine(cfg.Query, cfg.TSDB.Dir, log, n.reg); err != nil {
			return nil, err
		}
		deps.Engine = n.engine
		n.rules.PromQL, err = rules.NewPromQLRules(ctx, cfg.Rules.Dir, db, n.engine, n.Registry, log.With("component", "promql-rules"), n.reg)
		if err != nil {
			return nil, err
		}
		n.runners = append(n.runners, n.rules.PromQL.Run)
		deps.Latest, deps.Storage, deps.PromRules = latest, db, n.rules.PromQL
	}
	if cfg.has(RoleProcess) {
		if err := rules.InstallShipped(cfg.Rules.Dir); err != nil {
			return nil, err
		}
		n.rules.Stream, err = rules.NewService(ctx, cfg.Rules.Dir, n.Registry.Subtree, n.Registry, n.producer, log.With("component", "rules"), n.reg)
		if err != nil {
			return nil, err
		}
		n.consume(RulesConsumerGroup, []string{api.TopicTelemetry, api.TopicEvents}, n.rules.Stream.Handle).
			WithCheckpoint(cfg.Rules.CheckpointEvery, n.rules.Stream.Checkpoint)
		var republish rules.Republisher = noRepublish{}
		var invoker rules.Invoker = noInvoke{}
		if n.broker != nil {
			republish, invoker = n.broker, commands
		}
		n.rules.Routes, err = rules.NewRouter(cfg.Rules.RoutesDir, n.brokers, cfg.Kafka, n.producer, republish, invoker, log.With("component", "routes"), n.reg)
		if err != nil {
			return nil, err
		}
		n.runners = append(n.runners, n.advanceRules, n.rules.Routes.Run)
	}
	if n.rules.Stream != nil || n.rules.PromQL != nil {
		deps.Rules = n.rules
	}

	if n.http, err = httpapi.New(cfg.HTTP, deps, log.With("component", "http"), n.reg); err != nil {
		return nil, err
	}
	n.runners = append(n.runners, n.http.Run)
	if n.broker != nil {
		if err := n.broker.Listen(); err != nil {
			return nil, err
		}
	}
	if err := n.http.Listen(); err != nil {
		return nil, err
	}
	// What the components created under the data dir is the owner's only.
	if err := SecureDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if selfStore != nil {
		sm := cfg.SelfMonitoring
		if sm.Instance == "" {
			sm.Instance = n.http.Addr() // what a Prometheus scraping /metrics would call it
		}
		scraper, err := selfmon.New(sm, n.reg, selfStore, log.With("component", "selfmon"))
		if err != nil {
			return nil, err
		}
		n.runners = append(n.runners, scraper.Run)
	}
	return n, nil
}

// consume adds a consumer of topics in group, with a lag gauge, to the node's runners.
func (n *Node) consume(group string, topics []string, h bus.Handler) *bus.Consumer {
	c := bus.NewConsumer(n.brokers, group, topics, n.cfg.Kafka, h, n.log.With("group", group))
	n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gale_kafka_consumer_lag", Help: "Messages of the group's topics past its committed offsets, measured every 5 s (-1: cannot be measured).",
		ConstLabels: prometheus.Labels{"group": group},
	}, func() float64 { return float64(c.Lag()) }))
	n.runners = append(n.runners, c.Run)
	return c
}

// applyRegistry applies registry changes from gale.registry. Forged and
// malformed records are counted and passed over (committed), so that none
// stops the node from following the log.
func (n *Node) applyRegistry(ctx context.Context, batch []kafka.Message) error {
	for _, m := range batch {
		if err := n.follower.Handle(ctx, m.Key, m.Value, m.Offset); err != nil {
			return err // not applied: not committed, read again next time
		}
	}
	return nil
}

// noRepublish and noInvoke stand in on process nodes without a broker: route
// actions that need one fail and are dead-lettered, with the reason.
type noRepublish struct{}

func (noRepublish) Publish(string, []byte, byte) error {
	return errors.New("republish needs a node with the ingest role")
}

type noInvoke struct{}

func (noInvoke) Invoke(context.Context, string, string, string, json.RawMessage, time.Duration) (api.Command, error) {
	return api.Command{}, errors.New("commands need a node with the ingest role")
}

// Publish sends a downlink message to the devices connected to this node's broker (ingest role).
func (n *Node) Publish(topic string, payload []byte) error {
	if n.broker == nil {
		return errors.New("this node has no MQTT broker (ingest role)")
	}
	return n.broker.Publish(topic, payload, 1)
}

// Registerer is the node's metrics registry, for components composed with it.
func (n *Node) Registerer() prometheus.Registerer { return n.reg }

// MQTTAddr returns the broker's bound address, or "" without the ingest role.
func (n *Node) MQTTAddr() string {
	if n.broker == nil {
		return ""
	}
	return n.broker.Addr()
}

// HTTPAddr returns the HTTP API's bound address.
func (n *Node) HTTPAddr() string { return n.http.Addr() }

// APIURL returns the HTTP API's base URL: https://HTTPAddr when it serves TLS.
func (n *Node) APIURL() string {
	if n.cfg.HTTP.TLS.Enabled() {
		return "https://" + n.HTTPAddr()
	}
	return "http://" + n.HTTPAddr()
}

// MQTTTLS reports whether the broker serves MQTT over TLS.
func (n *Node) MQTTTLS() bool { return n.broker != nil && n.cfg.MQTT.TLS.Enabled() }

// KafkaAddrs returns the Kafka brokers the node uses.
func (n *Node) KafkaAddrs() []string { return n.brokers }

// readiness fails while the node starts and while it cannot reach Kafka, so
// that load balancers send devices and requests to nodes that can serve them.
func (n *Node) readiness() error {
	if !n.ready.Load() {
		return errors.New("starting")
	}
	if err := n.kafkaDown.Load(); err != nil {
		return *err
	}
	return nil
}

// kafkaCheckEvery is how often a node checks that it reaches Kafka.
const kafkaCheckEvery = time.Second

// watchKafka checks every second that Kafka answers; two failed checks in a
// row make the node unready until one succeeds.
func (n *Node) watchKafka(ctx context.Context) error {
	t := time.NewTicker(kafkaCheckEvery)
	defer t.Stop()
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := bus.Reachable(ctx, n.brokers, n.cfg.Kafka, kafkaCheckEvery)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			if n.kafkaDown.Swap(nil) != nil {
				n.log.Info("kafka reachable again: ready")
			}
			failed = 0
		default:
			if failed++; failed == 2 {
				n.log.Warn("kafka unreachable: not ready", "err", err)
				n.kafkaDown.Store(&err)
			}
		}
	}
}

// Run serves until ctx is cancelled, then closes the stores once every component stopped.
func (n *Node) Run(ctx context.Context) error {
	defer n.close()
	g, gctx := errgroup.WithContext(ctx)
	for _, run := range n.runners {
		g.Go(func() error { return run(gctx) })
	}
	n.ready.Store(true)
	return g.Wait()
}

// advanceRules moves the event engine's clock with the wall clock, so
// no-data rules fire even when every device fell silent.
func (n *Node) advanceRules(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if err := n.rules.Stream.AdvanceTo(ctx, now.Add(-n.cfg.Rules.NoDataGrace)); err != nil && ctx.Err() == nil {
				n.log.Warn("advance rules", "err", err)
			}
		}
	}
}

// ReloadRules reads the rule files again (SIGHUP, POST /api/v1/rules/reload).
func (n *Node) ReloadRules() error { return n.rules.Reload() }

func (n *Node) close() {
	if n.ingest != nil {
		if err := n.ingest.Close(); err != nil {
			n.log.Warn("close ingest producer", "err", err)
		}
	}
	if n.producer != nil {
		if err := n.producer.Close(); err != nil {
			n.log.Warn("close producer", "err", err)
		}
	}
	if n.engine != nil {
		if err := n.engine.Close(); err != nil {
			n.log.Warn("close query engine", "err", err)
		}
	}
	if n.db != nil {
		if err := n.db.Close(); err != nil {
			n.log.Warn("close tsdb", "err", err)
		}
	}
	if n.kafka != nil {
		n.kafka.Close()
	}
	if n.audit != nil {
		if err := n.audit.Close(); err != nil {
			n.log.Warn("close audit log", "err", err)
		}
	}
	if n.Registry != nil {
		if err := n.Registry.Close(); err != nil {
			n.log.Warn("close registry", "err", err)
		}
	}
	// The stores write their last files as they close.
	if err := SecureDataDir(n.cfg.DataDir); err != nil {
		n.log.Warn("data dir not restricted to its owner", "err", err)
	}
}

// ensureAdminToken creates the admin token on first start (or when its file
// is gone) and writes it to DATA/admin.token with mode 0600.
func ensureAdminToken(ctx context.Context, reg *registry.Registry, dataDir string) (string, error) {
	path := filepath.Join(dataDir, "admin.token")
	if b, err := os.ReadFile(path); err == nil && reg.ValidToken(strings.TrimSpace(string(b))) {
		return path, nil
	}
	token, err := reg.CreateToken(ctx, "admin")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	return path, nil
}
