package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"encoding/json"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	prometheustsdb "github.com/prometheus/prometheus/tsdb"
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
	"github.com/gale-iot/gale/platform/runs"
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
	// EventsConsumerGroup (suffixed with the node id) keeps the devices' events in the node's registry.
	EventsConsumerGroup = "gale-events"
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

	keys     *registry.Keys
	kafka    *bus.Embedded
	brokers  []string
	follower *registry.Follower
	db       *prometheustsdb.DB
	latest   *ingest.Latest
	engine   *tsdb.Engine
	producer *bus.SyncProducer
	broker   *broker.Broker
	commands *command.Dispatcher
	rules    rules.Set
	http     *httpapi.Server
	deps     httpapi.Deps
	runners  []func(context.Context) error
	// closers release what the components hold, in the order they were built.
	closers []closer
	// ready is set once every component's runner started; kafkaSeen once Kafka answered.
	ready, kafkaSeen atomic.Bool
	// kafkaDown is why Kafka was unreachable at the last two checks (nil: reachable).
	kafkaDown atomic.Pointer[error]
	// ingest carries device requests from the broker to Kafka, acknowledged asynchronously.
	ingest *bus.AsyncProducer
}

// closer releases one thing a component holds.
type closer struct {
	what  string
	close func() error
}

// New builds the components of the node's role (the modules table) in
// their start order: it opens the stores and binds the listeners. extra
// mounts more HTTP handlers (e.g. the twin control API) behind
// authentication. A node that fails to build is closed; one built but
// never run is closed with Close.
func New(ctx context.Context, cfg Config, log *slog.Logger, extra map[string]http.Handler) (*Node, error) {
	if err := cfg.Complete(); err != nil {
		return nil, err
	}
	if err := cfg.Kafka.LoadCredentials(); err != nil {
		return nil, err
	}
	order, err := startOrder(cfg.Role)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log.With("node", cfg.NodeID), reg: prometheus.NewRegistry()}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.deps = httpapi.Deps{Gatherer: n.reg, Ready: n.readiness, Extra: extra}
	for _, name := range order {
		if err := modules[name].init(n, ctx); err != nil {
			n.close()
			return nil, err
		}
	}
	// What the components created under the data dir is the owner's only.
	if err := SecureDataDir(cfg.DataDir); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// onClose adds what a component must release when the node closes.
func (n *Node) onClose(what string, close func() error) {
	n.closers = append(n.closers, closer{what, close})
}

func (n *Node) initMemory(context.Context) error {
	memory := ApplyMemory(n.cfg.Memory, n.log)
	n.runners = append(n.runners, func(ctx context.Context) error { return memory.TuneGC(ctx, time.Second, n.activeSeries) })
	return nil
}

func (n *Node) initDataDir(context.Context) error {
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// The stores write their last files as they close.
	n.onClose("restrict data dir to its owner", func() error { return SecureDataDir(n.cfg.DataDir) })
	// An existing data dir of an older version may be readable by all.
	return SecureDataDir(n.cfg.DataDir)
}

func (n *Node) initRegistry(context.Context) (err error) {
	if n.keys, err = n.clusterKeys(); err != nil {
		return err
	}
	if n.Registry, err = registry.Open(filepath.Join(n.cfg.DataDir, "registry.db"), registry.WithKeys(n.keys)); err != nil {
		return err
	}
	n.onClose("close registry", n.Registry.Close)
	n.deps.Registry = n.Registry
	return nil
}

func (n *Node) initAudit(context.Context) error {
	log, err := audit.Open(filepath.Join(n.cfg.DataDir, "audit.db"), audit.DefaultMaxEntries)
	if err != nil {
		return err
	}
	n.onClose("close audit log", log.Close)
	n.deps.Audit = log
	n.deps.Runs, err = runs.Open(filepath.Join(n.cfg.DataDir, "runs"), runs.DefaultMax)
	return err
}

func (n *Node) initKafka(context.Context) (err error) {
	n.brokers = n.cfg.Kafka.Brokers
	if len(n.brokers) == 0 {
		if n.kafka, err = startEmbedded(n.cfg.Kafka); err != nil {
			return err
		}
		n.onClose("close embedded kafka", func() error { n.kafka.Close(); return nil })
		if k := n.cfg.Kafka; n.kafka.Expires() {
			n.log.Info("embedded kafka bounds the data topics' records, keeps the registry's", "retention", k.EmbeddedRetention, "bytesPerPartition", k.EmbeddedRetentionBytes)
		} else if k.EmbeddedRetention > 0 || k.EmbeddedRetentionBytes > 0 {
			n.log.Warn("embedded kafka keeps every record: its data dir predates retention (its registry topic has none of its own); start from a new data dir to bound it", "dir", n.cfg.Kafka.DataDir)
		}
		n.brokers = n.kafka.Addrs()
	}
	// The registry change log is ordered: a device's change must not overtake its product's.
	n.producer = bus.NewSyncProducer(n.brokers, n.cfg.Kafka, api.TopicRegistry)
	n.onClose("close producer", n.producer.Close)
	n.runners = append(n.runners, n.watchKafka)
	return nil
}

// initRegistryLog shares the registry through its change log: every local
// change is announced on gale.registry, and every node applies every
// change. Its records are authenticated with the cluster key and carry
// device secrets sealed; records without a valid MAC change nothing.
func (n *Node) initRegistryLog(context.Context) error {
	n.Registry.SetPublisher(n.cfg.NodeID, func(ctx context.Context, c api.RegistryChange) error {
		b, err := n.keys.SealChange(c)
		if err != nil {
			return err
		}
		return n.producer.Produce(ctx, bus.Message{Topic: api.TopicRegistry, Key: registry.ChangeKey(c), Value: b})
	})
	n.follower = registry.NewFollower(n.Registry, n.keys, n.log.With("component", "registry"), n.reg)
	n.consume(RegistryConsumerGroup+"-"+n.cfg.NodeID, []string{api.TopicRegistry}, n.applyRegistry, nil)
	return nil
}

func (n *Node) initAdmin(ctx context.Context) (err error) {
	if n.TokenFile, err = ensureAdminToken(ctx, n.Registry, n.cfg.DataDir); err != nil {
		return err
	}
	if n.cfg.SeedDemo != (Demo{}) {
		return SeedDemo(ctx, n.Registry, n.cfg.SeedDemo)
	}
	return nil
}

func (n *Node) initBroker(context.Context) (err error) {
	n.ingest = bus.NewAsyncProducer(n.brokers, n.cfg.Kafka)
	n.onClose("close ingest producer", n.ingest.Close)
	if err := n.ingest.RegisterStats(n.reg); err != nil {
		return err
	}
	if n.broker, err = broker.New(n.cfg.MQTT, n.Registry, n.ingest, n.log.With("component", "broker"), n.reg); err != nil {
		return err
	}
	n.Registry.WatchDevices(n.broker.DeviceChanged)
	if err := n.broker.Listen(); err != nil {
		return err
	}
	n.onClose("release mqtt listener", ignoreClosed(n.broker.CloseListener))
	n.runners = append(n.runners, n.broker.Run)
	return nil
}

func (n *Node) initCommands(context.Context) error {
	n.commands = command.New(n.Registry, n.broker, n.producer, n.log.With("component", "command"), n.reg)
	n.broker.SetListener(n.commands)
	n.consume(CommandsConsumerGroup+"-"+n.cfg.NodeID, []string{api.TopicCommands}, n.commands.Handle, nil)
	n.runners = append(n.runners, n.commands.Run)
	n.deps.Commands = n.commands
	return nil
}

func (n *Node) initTSDB(ctx context.Context) (err error) {
	if n.db, err = tsdb.Open(n.cfg.TSDB, n.log, n.reg); err != nil {
		return err
	}
	n.onClose("close tsdb", n.db.Close)
	n.latest = ingest.NewLatest()
	if err := n.latest.Restore(ctx, n.db, time.Now().Add(-n.cfg.TSDB.OutOfOrderWindow)); err != nil {
		return err
	}
	writer := ingest.NewWriter(n.db, n.latest, n.log.With("component", "ingest"), n.reg)
	n.consume(TSDBConsumerGroup+"-"+n.cfg.NodeID, []string{api.TopicTelemetry}, writer.Handle, nil)
	n.deps.Latest, n.deps.Storage = n.latest, n.db
	return nil
}

// initRemoteWrite gives each endpoint a group of its own on gale.telemetry,
// so a slow or dead endpoint holds back only itself, never the local TSDB.
func (n *Node) initRemoteWrite(context.Context) error {
	for _, rc := range n.cfg.RemoteWrite {
		rw, err := remotewrite.New(rc, n.log.With("component", "remotewrite", "endpoint", rc.Name), n.reg)
		if err != nil {
			return err
		}
		n.consume(RemoteWriteConsumerGroup+"-"+n.cfg.NodeID+"-"+rc.Name, []string{api.TopicTelemetry}, rw.Handle, nil)
	}
	return nil
}

// initQuery builds the one engine of the query API, the history endpoint
// and PromQL rules: they share its limits.
func (n *Node) initQuery(context.Context) (err error) {
	if n.engine, err = tsdb.NewEngine(n.cfg.Query, n.cfg.TSDB.Dir, n.log, n.reg); err != nil {
		return err
	}
	n.onClose("close query engine", n.engine.Close)
	n.deps.Engine = n.engine
	return nil
}

func (n *Node) initPromQLRules(ctx context.Context) (err error) {
	if err := rules.InstallShipped(n.cfg.Rules.Dir); err != nil {
		return err
	}
	n.rules.PromQL, err = rules.NewPromQLRules(ctx, n.cfg.Rules.Dir, n.db, n.engine, n.Registry, n.log.With("component", "promql-rules"), n.reg)
	if err != nil {
		return err
	}
	n.runners = append(n.runners, n.rules.PromQL.Run)
	// The rule manager's groups wait for it to run: a node never run starts and stops it.
	n.onClose("stop promql rules", func() error {
		if n.ready.Load() {
			return nil // Run stopped them
		}
		stopped, cancel := context.WithCancel(context.Background())
		cancel()
		return n.rules.PromQL.Run(stopped)
	})
	n.deps.PromRules, n.deps.Rules = n.rules.PromQL, &n.rules
	return nil
}

func (n *Node) initStreamRules(ctx context.Context) (err error) {
	if err := rules.InstallShipped(n.cfg.Rules.Dir); err != nil {
		return err
	}
	n.rules.Stream, err = rules.NewService(ctx, n.cfg.Rules.Dir, n.Registry.Subtree, n.Registry, n.producer, n.log.With("component", "rules"), n.reg)
	if err != nil {
		return err
	}
	n.consume(RulesConsumerGroup, []string{api.TopicTelemetry, api.TopicEvents}, n.rules.Stream.Handle, func(c *bus.Consumer) {
		c.WithCheckpoint(n.cfg.Rules.CheckpointEvery, n.rules.Stream.Checkpoint)
	})
	n.runners = append(n.runners, n.advanceRules)
	n.deps.Rules = &n.rules
	return nil
}

func (n *Node) initRoutes(context.Context) (err error) {
	var republish rules.Republisher = noRepublish{}
	var invoker rules.Invoker = noInvoke{}
	if n.broker != nil {
		republish, invoker = n.broker, n.commands
	}
	n.rules.Routes, err = rules.NewRouter(n.cfg.Rules.RoutesDir, n.brokers, n.cfg.Kafka, n.producer, republish, invoker, n.log.With("component", "routes"), n.reg)
	if err != nil {
		return err
	}
	n.runners = append(n.runners, n.rules.Routes.Run)
	return nil
}

func (n *Node) initHTTP(context.Context) (err error) {
	if n.http, err = httpapi.New(n.cfg.HTTP, n.deps, n.log.With("component", "http"), n.reg); err != nil {
		return err
	}
	if err := n.http.Listen(); err != nil {
		return err
	}
	n.onClose("release http listener", ignoreClosed(n.http.CloseListener))
	n.runners = append(n.runners, n.http.Run)
	return nil
}

func (n *Node) initSelfMonitor(context.Context) error {
	sm := n.cfg.SelfMonitoring
	if sm.Instance == "" {
		sm.Instance = n.http.Addr() // what a Prometheus scraping /metrics would call it
	}
	scraper, err := selfmon.New(sm, n.reg, n.db, n.log.With("component", "selfmon"))
	if err != nil {
		return err
	}
	n.runners = append(n.runners, scraper.Run)
	return nil
}

// ignoreClosed is close, to which an already closed listener (a node that
// ran closes its own) is no error.
func ignoreClosed(close func() error) func() error {
	return func() error {
		if err := close(); !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}
}

// consume adds a consumer of topics in group to the node's runners, with
// its lag gauge while it runs; with, when not nil, sets it up further. The
// consumer is made as it starts, so that a node never run holds no reader.
func (n *Node) consume(group string, topics []string, h bus.Handler, with func(*bus.Consumer)) {
	n.runners = append(n.runners, func(ctx context.Context) error {
		c := bus.NewConsumer(n.brokers, group, topics, n.cfg.Kafka, h, n.log.With("group", group))
		if with != nil {
			with(c)
		}
		unregister, err := bus.RegisterLag(n.reg, c)
		if err != nil {
			return err
		}
		defer unregister()
		return c.Run(ctx)
	})
}

// applyRegistry applies registry changes from gale.registry. Forged and
// malformed records are counted and passed over (committed), so that none
// stops the node from following the log.
func (n *Node) applyRegistry(ctx context.Context, batch []bus.Message) error {
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

// readiness fails until every component runs and Kafka answered, and while
// the node cannot reach Kafka, so that load balancers send devices and
// requests to nodes that can serve them.
func (n *Node) readiness() error {
	if !n.ready.Load() || !n.kafkaSeen.Load() {
		return errors.New("starting")
	}
	if err := n.kafkaDown.Load(); err != nil {
		return *err
	}
	return nil
}

// kafkaCheckEvery is how often a node checks that it reaches Kafka.
const kafkaCheckEvery = time.Second

// watchKafka checks at once, then every second, that Kafka answers; the
// node is ready once it did, and two failed checks in a row make it unready
// until one succeeds.
func (n *Node) watchKafka(ctx context.Context) error {
	t := time.NewTicker(kafkaCheckEvery)
	defer t.Stop()
	failed := 0
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
		err := bus.Reachable(ctx, n.brokers, n.cfg.Kafka, kafkaCheckEvery)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			n.kafkaSeen.Store(true)
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
	var started sync.WaitGroup
	started.Add(len(n.runners))
	for _, run := range n.runners {
		g.Go(func() error {
			started.Done()
			return run(gctx)
		})
	}
	started.Wait()
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

// Close releases what a node built but never ran holds: its listeners,
// stores and producers. Run closes them itself.
func (n *Node) Close() { n.close() }

// close releases what the components hold, in the reverse of the order they were built.
func (n *Node) close() {
	for _, c := range slices.Backward(n.closers) {
		if err := c.close(); err != nil {
			n.log.Warn(c.what, "err", err)
		}
	}
	n.closers = nil
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
