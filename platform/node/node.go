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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/broker"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/command"
	"github.com/gale-iot/gale/platform/httpapi"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/rules"
	"github.com/gale-iot/gale/platform/tsdb"
)

// Consumer groups of the node's Kafka readers.
const (
	TSDBConsumerGroup  = "gale-tsdb"
	RulesConsumerGroup = "gale-rules"
	// CommandsConsumerGroup is suffixed with the node id: every node sees every command.
	CommandsConsumerGroup = "gale-commands"
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
	db       tsdbCloser
	producer *bus.Producer
	broker   *broker.Broker
	consumer *bus.Consumer
	rules    rules.Set
	rulesIn  *bus.Consumer
	commands *command.Dispatcher
	cmdIn    *bus.Consumer
	http     *httpapi.Server
	ready    atomic.Bool
}

type tsdbCloser interface{ Close() error }

// New opens the node's stores, binds its listeners and prepares every component.
// extra mounts more HTTP handlers (e.g. the twin control API) behind authentication.
func New(ctx context.Context, cfg Config, log *slog.Logger, extra map[string]http.Handler) (n *Node, err error) {
	if err := cfg.Complete(); err != nil {
		return nil, err
	}
	n = &Node{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if n.Registry, err = registry.Open(filepath.Join(cfg.DataDir, "registry.db")); err != nil {
		return nil, err
	}
	if n.TokenFile, err = ensureAdminToken(ctx, n.Registry, cfg.DataDir); err != nil {
		return nil, err
	}

	n.brokers = cfg.Kafka.Brokers
	if len(n.brokers) == 0 {
		n.kafka, err = bus.StartEmbedded(cfg.Kafka.EmbeddedAddr, cfg.Kafka.DataDir, cfg.Kafka.SyncWrites, cfg.Kafka.Partitions, api.Topics()...)
		if err != nil {
			return nil, err
		}
		n.brokers = n.kafka.Addrs()
	}

	db, err := tsdb.Open(cfg.TSDB, log, n.reg)
	if err != nil {
		return nil, err
	}
	n.db = db
	latest := ingest.NewLatest()
	if err := latest.Restore(ctx, db, time.Now().Add(-cfg.TSDB.OutOfOrderWindow)); err != nil {
		return nil, err
	}

	n.producer = bus.NewProducer(n.brokers, cfg.Kafka)
	if n.broker, err = broker.New(cfg.MQTT, n.Registry, n.producer, log.With("component", "broker"), n.reg); err != nil {
		return nil, err
	}
	writer := ingest.NewWriter(db, latest, log.With("component", "ingest"), n.reg)
	n.consumer = bus.NewConsumer(n.brokers, TSDBConsumerGroup, []string{api.TopicTelemetry}, cfg.Kafka, writer.Handle, log.With("component", "ingest"))

	if err := rules.InstallShipped(cfg.Rules.Dir); err != nil {
		return nil, err
	}
	n.rules.Stream, err = rules.NewService(ctx, cfg.Rules.Dir, n.Registry.Subtree, n.Registry, n.producer, log.With("component", "rules"), n.reg)
	if err != nil {
		return nil, err
	}
	engine := tsdb.NewEngine(log, n.reg)
	n.rules.PromQL, err = rules.NewPromQLRules(ctx, cfg.Rules.Dir, db, engine, n.Registry, log.With("component", "promql-rules"), n.reg)
	if err != nil {
		return nil, err
	}
	n.rulesIn = bus.NewConsumer(n.brokers, RulesConsumerGroup, []string{api.TopicTelemetry, api.TopicEvents}, cfg.Kafka, n.rules.Stream.Handle, log.With("component", "rules")).
		WithCheckpoint(cfg.Rules.CheckpointEvery, n.rules.Stream.Checkpoint)
	n.commands = command.New(n.Registry, n.broker, n.producer, log.With("component", "command"), n.reg)
	n.broker.SetListener(n.commands)
	cmdGroup := CommandsConsumerGroup + "-" + cfg.NodeID
	n.cmdIn = bus.NewConsumer(n.brokers, cmdGroup, []string{api.TopicCommands}, cfg.Kafka, n.commands.Handle, log.With("component", "command"))
	n.rules.Routes, err = rules.NewRouter(cfg.Rules.RoutesDir, n.brokers, cfg.Kafka, n.producer, n.broker, n.commands, log.With("component", "routes"), n.reg)
	if err != nil {
		return nil, err
	}
	for group, c := range map[string]*bus.Consumer{TSDBConsumerGroup: n.consumer, RulesConsumerGroup: n.rulesIn, cmdGroup: n.cmdIn} {
		n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gale_kafka_consumer_lag", Help: "Messages the consumer group has yet to read.",
			ConstLabels: prometheus.Labels{"group": group},
		}, func() float64 { return float64(c.Lag()) }))
	}

	n.http, err = httpapi.New(cfg.HTTP, httpapi.Deps{
		Registry: n.Registry, Latest: latest, Storage: db, Rules: n.rules, Commands: n.commands, Engine: engine, PromRules: n.rules.PromQL, Gatherer: n.reg,
		Ready: n.readiness, Extra: extra,
	}, log.With("component", "http"), n.reg)
	if err != nil {
		return nil, err
	}
	if err := n.broker.Listen(); err != nil {
		return nil, err
	}
	if err := n.http.Listen(); err != nil {
		return nil, err
	}
	return n, nil
}

// Publish sends a downlink message to the devices connected to this node's broker.
func (n *Node) Publish(topic string, payload []byte) error {
	return n.broker.Publish(topic, payload, 1)
}

// Registerer is the node's metrics registry, for components composed with it.
func (n *Node) Registerer() prometheus.Registerer { return n.reg }

// MQTTAddr, HTTPAddr and KafkaAddrs return the bound addresses.
func (n *Node) MQTTAddr() string { return n.broker.Addr() }

// HTTPAddr returns the HTTP API's bound address.
func (n *Node) HTTPAddr() string { return n.http.Addr() }

// KafkaAddrs returns the Kafka brokers the node uses.
func (n *Node) KafkaAddrs() []string { return n.brokers }

func (n *Node) readiness() error {
	if !n.ready.Load() {
		return errors.New("starting")
	}
	return nil
}

// Run serves until ctx is cancelled, then shuts down in order: MQTT first
// (no new messages), then the consumer, then the stores.
func (n *Node) Run(ctx context.Context) error {
	defer n.close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.broker.Run(gctx) })
	g.Go(func() error { return n.consumer.Run(gctx) })
	g.Go(func() error { return n.rulesIn.Run(gctx) })
	g.Go(func() error { return n.advanceRules(gctx) })
	g.Go(func() error { return n.rules.PromQL.Run(gctx) })
	g.Go(func() error { return n.rules.Routes.Run(gctx) })
	g.Go(func() error { return n.cmdIn.Run(gctx) })
	g.Go(func() error { return n.commands.Run(gctx) })
	g.Go(func() error { return n.http.Run(gctx) })
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
	if n.producer != nil {
		if err := n.producer.Close(); err != nil {
			n.log.Warn("close producer", "err", err)
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
	if n.Registry != nil {
		if err := n.Registry.Close(); err != nil {
			n.log.Warn("close registry", "err", err)
		}
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
