package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/pki"
)

// inProcess is the default cloud: the embedded Kafka (kfake, persisted in
// the scratch dir) and the nodes run as goroutines of this process on
// loopback ports, each node with a data dir of its own. Kill cancels a
// node, which drops its connections at once but closes its stores cleanly
// (a container gets SIGKILL instead); Revive starts it again on the same
// data and ports.
type inProcess struct {
	log *slog.Logger
	ctx context.Context // the run's, for revived nodes

	mu        sync.Mutex
	kafka     *bus.Embedded
	kafkaAddr string
	kafkaDir  string
	nodes     map[string]*procNode
	token     string
	scheme    string       // of the nodes' API URLs
	http      *http.Client // trusts the nodes' CA
	failures  []error      // nodes that stopped on their own
}

// procNode is one in-process node; once started, its config holds the
// addresses it bound, which a revived node binds again.
type procNode struct {
	cfg    node.Config
	n      *node.Node
	cancel context.CancelFunc
	done   chan error
}

// InProcess returns the in-process cloud; its nodes log to log.
func InProcess(log *slog.Logger) Cloud {
	return &inProcess{log: log, nodes: map[string]*procNode{}}
}

func (c *inProcess) Name() string { return CloudInProcess }

func (c *inProcess) Start(ctx context.Context, spec CloudSpec) error {
	c.ctx = ctx
	c.scheme, c.http = "http://", http.DefaultClient
	if spec.TLS != nil {
		tlsCfg, err := pki.ClientConfig{CAFile: spec.TLS.CA}.Load()
		if err != nil {
			return err
		}
		c.scheme, c.http = "https://", &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	}
	c.kafkaDir = filepath.Join(spec.DataDir, KafkaName)
	if err := c.startKafka("127.0.0.1:0"); err != nil {
		return err
	}
	// The nodes of one cluster share one cluster key.
	clusterKey := filepath.Join(spec.DataDir, "cluster.key")
	if err := node.EnsureClusterKey(clusterKey); err != nil {
		return err
	}
	for i := range spec.Nodes {
		name := NodeName(i)
		cfg := node.DefaultConfig()
		cfg.DataDir, cfg.NodeID = filepath.Join(spec.DataDir, name), name
		cfg.HTTP.Addr, cfg.MQTT.Addr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.Kafka.Brokers = []string{c.kafkaAddr}
		cfg.ClusterKeyFile = clusterKey
		cfg.MQTT.MaxSampleFuture = spec.MaxSampleFuture
		cfg.Rules.Dir = filepath.Join(cfg.DataDir, "rules")
		if spec.TLS != nil {
			srv := pki.ServerConfig{CertFile: spec.TLS.Cert, KeyFile: spec.TLS.Key}
			cfg.MQTT.TLS, cfg.HTTP.TLS = srv, srv
		}
		if i == 0 {
			cfg.SeedDemo = spec.SeedDemo
		}
		if err := os.CopyFS(cfg.Rules.Dir, os.DirFS(spec.RulesDir)); err != nil {
			return fmt.Errorf("rules of %s: %w", name, err)
		}
		if err := cfg.Complete(); err != nil {
			return err
		}
		c.nodes[name] = &procNode{cfg: cfg}
		if err := c.startNode(name); err != nil {
			return err
		}
		if i == 0 {
			tok, err := os.ReadFile(c.nodes[name].n.TokenFile)
			if err != nil {
				return fmt.Errorf("admin token: %w", err)
			}
			c.token = string(bytes.TrimSpace(tok))
		}
		if err := waitReady(ctx, c.http, c.scheme+c.nodes[name].cfg.HTTP.Addr, time.Minute); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func (c *inProcess) startKafka(addr string) error {
	k, err := bus.StartEmbedded(addr, c.kafkaDir, false, bus.DefaultConfig().Partitions, api.Topics()...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kafka, c.kafkaAddr = k, k.Addrs()[0]
	return nil
}

// startNode builds and runs a node; a revived node binds the addresses it had.
func (c *inProcess) startNode(name string) error {
	p := c.nodes[name]
	n, err := node.New(c.ctx, p.cfg, c.log.With("node", name), nil)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan error, 1)
	go func() {
		err := n.Run(ctx)
		if ctx.Err() == nil {
			// Not killed: the node stopped on its own.
			c.mu.Lock()
			c.failures = append(c.failures, fmt.Errorf("%s stopped: %v", name, err))
			c.mu.Unlock()
		}
		done <- err
	}()
	c.mu.Lock()
	p.n, p.cancel, p.done = n, cancel, done
	p.cfg.HTTP.Addr, p.cfg.MQTT.Addr = n.HTTPAddr(), n.MQTTAddr()
	c.mu.Unlock()
	return nil
}

func (c *inProcess) Endpoints(name string) (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.nodes[name]
	if !ok || p.n == nil {
		return "", ""
	}
	return c.scheme + p.cfg.HTTP.Addr, p.cfg.MQTT.Addr
}

func (c *inProcess) Token() string { return c.token }

func (c *inProcess) Kill(_ context.Context, name string) error {
	if name == KafkaName {
		c.mu.Lock()
		k := c.kafka
		c.kafka = nil
		c.mu.Unlock()
		if k == nil {
			return errors.New("kafka is not running")
		}
		k.Close()
		return nil
	}
	c.mu.Lock()
	p, ok := c.nodes[name]
	running := ok && p.n != nil
	if running {
		p.n = nil
	}
	c.mu.Unlock()
	if !running {
		return fmt.Errorf("%s is not running", name)
	}
	p.cancel()
	if err := <-p.done; err != nil {
		c.log.Warn("killed node stopped with an error", "node", name, "err", err)
	}
	return nil
}

func (c *inProcess) Revive(ctx context.Context, name string) error {
	if name == KafkaName {
		c.mu.Lock()
		running := c.kafka != nil
		c.mu.Unlock()
		if running {
			return errors.New("kafka is running")
		}
		return c.startKafka(c.kafkaAddr)
	}
	c.mu.Lock()
	p, ok := c.nodes[name]
	running := ok && p.n != nil
	c.mu.Unlock()
	if !ok || running {
		return fmt.Errorf("%s is not a killed node", name)
	}
	if err := c.startNode(name); err != nil {
		return err
	}
	return waitReady(ctx, c.http, c.scheme+p.cfg.HTTP.Addr, time.Minute)
}

func (c *inProcess) Pause(context.Context, string) error  { return errUnsupported("pause") }
func (c *inProcess) Resume(context.Context, string) error { return errUnsupported("resume") }

// Partition implements Cloud: only the runner's balancer can cut a node off devices.
func (c *inProcess) Partition(_ context.Context, _, from string) error {
	return errUnsupported("partition from " + from)
}

// Heal implements Cloud.
func (c *inProcess) Heal(_ context.Context, _, from string) error {
	return errUnsupported("partition from " + from)
}

func errUnsupported(action string) error {
	why := inProcessUnsupported[action]
	if why == "" {
		why = "the runner's balancer does it"
	}
	return fmt.Errorf("%w: the in-process cloud cannot %s: %s", ErrUnsupported, action, why)
}

func (c *inProcess) Stop(bool) error {
	var errs []error
	for name, p := range c.nodes {
		c.mu.Lock()
		running := p.n != nil
		c.mu.Unlock()
		if running {
			errs = append(errs, c.Kill(context.Background(), name))
		}
	}
	c.mu.Lock()
	k := c.kafka
	c.kafka = nil
	errs = append(errs, c.failures...)
	c.mu.Unlock()
	if k != nil {
		k.Close()
	}
	return errors.Join(errs...)
}

// WaitReady waits until the node at apiURL answers /readyz with 200, for at most timeout.
func WaitReady(ctx context.Context, apiURL string, timeout time.Duration) error {
	return waitReady(ctx, http.DefaultClient, apiURL, timeout)
}

// waitReady is WaitReady with client.
func waitReady(ctx context.Context, client *http.Client, apiURL string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !ready(ctx, client, apiURL) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s", apiURL, timeout)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}
