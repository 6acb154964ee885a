// Package cluster runs a scenario's cloud as containers of Gale's own image
// (ci/Dockerfile: FROM scratch, built by `make images`; nothing is pulled)
// with testcontainers-go: a `gale kafka` node and `gale cloud` nodes. The
// Kafka node requires SASL (SCRAM-SHA-512) and the cloud nodes share one
// cluster key, both made afresh for each cloud.
//
// Two Docker networks of its own carry the traffic: on "back" the nodes
// reach Kafka and each other; on "front" the scenario runner (this host)
// reaches the nodes' HTTP APIs and MQTT brokers at their container
// addresses. So a node's faults are real: Kill is SIGKILL, Pause freezes
// the container's processes, and a partition disconnects it from "back"
// (Kafka and the other nodes are gone, devices still reach it) or from
// "front" (the devices are gone, Kafka is not).
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/scenarios"
)

// Config configures the container cloud.
type Config struct {
	// Image is Gale's image (default gale:latest, or $GALE_IMAGE).
	Image string
	// LogDir receives every container's log when a scenario fails
	// (LogDir/NAME.log); empty keeps none.
	LogDir string
}

// Cloud is a scenario cloud of containers.
type Cloud struct {
	cfg Config
	log *slog.Logger

	docker      *testcontainers.DockerClient
	front, back *testcontainers.DockerNetwork
	token       string

	mu         sync.Mutex
	containers map[string]*testcontainers.DockerContainer // kafka and the nodes
	addrs      map[string]string                          // node → front address, "" while it is down
}

// New returns a container cloud; scenarios.WithCloud takes it as
// func(log) scenarios.Cloud.
func New(cfg Config) func(log *slog.Logger) scenarios.Cloud {
	if cfg.Image == "" {
		cfg.Image = os.Getenv("GALE_IMAGE")
	}
	if cfg.Image == "" {
		cfg.Image = "gale:latest"
	}
	return func(log *slog.Logger) scenarios.Cloud {
		return &Cloud{cfg: cfg, log: log, containers: map[string]*testcontainers.DockerContainer{}, addrs: map[string]string{}}
	}
}

// Name implements scenarios.Cloud.
func (c *Cloud) Name() string { return scenarios.CloudContainers }

// nodeConfig is a cloud node's config file (platform/node.Config).
const nodeConfig = `dataDir: /data
nodeID: %s
role: all
seedDemo: {turbines: %d, direct: %d}
http: {addr: "0.0.0.0:8080"}
mqtt: {addr: "0.0.0.0:1883", maxSampleFuture: %s}
kafka:
  brokers: ["%s:9092"]
  sasl: {mechanism: SCRAM-SHA-512, username: %s, passwordFile: %s}
clusterKeyFile: %s
rules: {dir: /%s}
`

// The cluster's secrets, made afresh for each cloud: the Kafka user's
// password (the Kafka node requires SASL) and the cluster key every node shares.
const (
	kafkaUser         = "gale"
	kafkaPasswordPath = "/kafka.pass"
	clusterKeyPath    = "/cluster.key"
)

// randomHex returns n random bytes hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// Start implements scenarios.Cloud.
func (c *Cloud) Start(ctx context.Context, spec scenarios.CloudSpec) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var err error
	if c.docker, err = testcontainers.NewDockerClientWithOpts(ctx); err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	if _, err := c.docker.ImageInspect(ctx, c.cfg.Image); err != nil {
		return fmt.Errorf("image %s is not built: run `make images` (nothing is pulled): %w", c.cfg.Image, err)
	}
	if c.front, err = tcnetwork.New(ctx); err != nil {
		return fmt.Errorf("create the front network: %w", err)
	}
	if c.back, err = tcnetwork.New(ctx); err != nil {
		return fmt.Errorf("create the back network: %w", err)
	}
	password, clusterKey := randomHex(24), randomHex(32)
	secret := func(path, content string) testcontainers.ContainerFile {
		return testcontainers.ContainerFile{Reader: strings.NewReader(content + "\n"), ContainerFilePath: path, FileMode: 0o600}
	}
	if err := c.run(ctx, scenarios.KafkaName, []*testcontainers.DockerNetwork{c.back},
		testcontainers.WithCmd("kafka", "--data-dir", "/data/kafka", "--addr", scenarios.KafkaName+":9092",
			"--sasl-user", kafkaUser, "--sasl-password-file", kafkaPasswordPath),
		testcontainers.WithFiles(secret(kafkaPasswordPath, password)),
		testcontainers.WithWaitStrategy(wait.ForLog("Gale Kafka is up").WithStartupTimeout(30*time.Second))); err != nil {
		return err
	}
	for i := range spec.Nodes {
		name := scenarios.NodeName(i)
		var seed node.Demo
		if i == 0 {
			seed = spec.SeedDemo
		}
		rules := filepath.Base(spec.RulesDir) // a directory is copied under its own name
		conf := fmt.Sprintf(nodeConfig, name, seed.Turbines, seed.Direct, spec.MaxSampleFuture, scenarios.KafkaName,
			kafkaUser, kafkaPasswordPath, clusterKeyPath, rules)
		if err := c.run(ctx, name, []*testcontainers.DockerNetwork{c.front, c.back},
			testcontainers.WithCmd("cloud", "--config", "/gale.yaml"),
			testcontainers.WithFiles(
				testcontainers.ContainerFile{Reader: strings.NewReader(conf), ContainerFilePath: "/gale.yaml", FileMode: 0o644},
				testcontainers.ContainerFile{HostFilePath: spec.RulesDir, ContainerFilePath: "/" + rules, FileMode: 0o644},
				secret(kafkaPasswordPath, password), secret(clusterKeyPath, clusterKey)),
			testcontainers.WithWaitStrategy(wait.ForLog("Gale cloud node "+name+" is up").WithStartupTimeout(60*time.Second))); err != nil {
			return err
		}
		if err := c.locate(ctx, name); err != nil {
			return err
		}
		if i == 0 {
			if c.token, err = c.readToken(ctx, name); err != nil {
				return err
			}
		}
		if err := c.waitReady(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// run starts the image as name on networks (aliased name on each).
func (c *Cloud) run(ctx context.Context, name string, nets []*testcontainers.DockerNetwork, opts ...testcontainers.ContainerCustomizer) error {
	for _, nw := range nets {
		opts = append(opts, tcnetwork.WithNetwork([]string{name}, nw))
	}
	opts = append(opts, testcontainers.WithName(fmt.Sprintf("gale-%s-%s", name, nets[0].ID[:8])), loopbackPorts())
	ctr, err := testcontainers.Run(ctx, c.cfg.Image, opts...)
	// Docker picks the published host ports from the ephemeral range, where a
	// client socket of this machine may hold one at that moment: start again.
	for try := 1; err != nil && try < 3 && strings.Contains(err.Error(), "address already in use"); try++ {
		c.log.Warn("container start lost a host port race; starting it again", "container", name, "err", err)
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		ctr, err = testcontainers.Run(ctx, c.cfg.Image, opts...)
	}
	if ctr != nil {
		c.mu.Lock()
		c.containers[name] = ctr
		c.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// loopbackPorts publishes the image's ports on 127.0.0.1 only (testcontainers
// would publish them on every interface); the runner uses the front network.
func loopbackPorts() testcontainers.CustomizeRequestOption {
	return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
		hc.PortBindings = network.PortMap{}
		for _, p := range []string{"1883/tcp", "8080/tcp", "9092/tcp"} {
			hc.PortBindings[network.MustParsePort(p)] = []network.PortBinding{{HostIP: loopback}}
		}
	})
}

// locate records the node's address on the front network (it may change when the container restarts).
func (c *Cloud) locate(ctx context.Context, name string) error {
	c.mu.Lock()
	ctr := c.containers[name]
	c.mu.Unlock()
	info, err := ctr.Inspect(ctx)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", name, err)
	}
	ep, ok := info.NetworkSettings.Networks[c.front.Name]
	if !ok || !ep.IPAddress.IsValid() {
		return fmt.Errorf("%s has no address on the front network", name)
	}
	c.mu.Lock()
	c.addrs[name] = ep.IPAddress.String()
	c.mu.Unlock()
	return nil
}

// readToken reads the node's admin token from its data dir.
func (c *Cloud) readToken(ctx context.Context, name string) (string, error) {
	rc, err := c.containers[name].CopyFileFromContainer(ctx, "/data/admin.token")
	if err != nil {
		return "", fmt.Errorf("admin token of %s: %w", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return "", fmt.Errorf("admin token of %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// waitReady waits until the node answers /readyz with 200 on the front network, for at most a minute.
func (c *Cloud) waitReady(ctx context.Context, name string) error {
	apiURL, _ := c.Endpoints(name)
	if err := scenarios.WaitReady(ctx, apiURL, time.Minute); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Endpoints implements scenarios.Cloud.
func (c *Cloud) Endpoints(node string) (string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ip := c.addrs[node]
	if ip == "" {
		return "", ""
	}
	return "http://" + ip + ":8080", ip + ":1883"
}

// Token implements scenarios.Cloud.
func (c *Cloud) Token() string { return c.token }

func (c *Cloud) container(name string) (*testcontainers.DockerContainer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctr, ok := c.containers[name]
	if !ok {
		return nil, fmt.Errorf("no container %s", name)
	}
	return ctr, nil
}

// Kill implements scenarios.Cloud: SIGKILL.
func (c *Cloud) Kill(ctx context.Context, name string) error {
	ctr, err := c.container(name)
	if err != nil {
		return err
	}
	if _, err := c.docker.ContainerKill(ctx, ctr.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	c.mu.Lock()
	delete(c.addrs, name)
	c.mu.Unlock()
	return nil
}

// Revive implements scenarios.Cloud: the container starts again with its data.
func (c *Cloud) Revive(ctx context.Context, name string) error {
	ctr, err := c.container(name)
	if err != nil {
		return err
	}
	// The wait strategy's log line is there from the first start: wait for readiness instead.
	if _, err := c.docker.ContainerStart(ctx, ctr.GetContainerID(), client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	if name == scenarios.KafkaName {
		return nil
	}
	if err := c.locate(ctx, name); err != nil {
		return err
	}
	return c.waitReady(ctx, name)
}

// Pause implements scenarios.Cloud: the container's processes are frozen.
func (c *Cloud) Pause(ctx context.Context, name string) error {
	ctr, err := c.container(name)
	if err != nil {
		return err
	}
	if _, err := c.docker.ContainerPause(ctx, ctr.GetContainerID(), client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause %s: %w", name, err)
	}
	return nil
}

// Resume implements scenarios.Cloud.
func (c *Cloud) Resume(ctx context.Context, name string) error {
	ctr, err := c.container(name)
	if err != nil {
		return err
	}
	if _, err := c.docker.ContainerUnpause(ctx, ctr.GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("resume %s: %w", name, err)
	}
	return nil
}

// Partition implements scenarios.Cloud: the node leaves the back network
// (from Kafka) or the front one (from the devices and the runner, whose
// connections then hang rather than break, as in a real partition).
func (c *Cloud) Partition(ctx context.Context, node, from string) error {
	ctr, err := c.container(node)
	if err != nil {
		return err
	}
	nw := c.network(from)
	if _, err := c.docker.NetworkDisconnect(ctx, nw.ID, client.NetworkDisconnectOptions{Container: ctr.GetContainerID(), Force: true}); err != nil {
		return fmt.Errorf("partition %s from %s: %w", node, from, err)
	}
	return nil
}

// Heal implements scenarios.Cloud: the node is back on the network under its
// alias; back on the front one, it has a new address.
func (c *Cloud) Heal(ctx context.Context, node, from string) error {
	ctr, err := c.container(node)
	if err != nil {
		return err
	}
	nw := c.network(from)
	if _, err := c.docker.NetworkConnect(ctx, nw.ID, client.NetworkConnectOptions{
		Container: ctr.GetContainerID(), EndpointConfig: &network.EndpointSettings{Aliases: []string{node}},
	}); err != nil {
		return fmt.Errorf("heal %s from %s: %w", node, from, err)
	}
	if nw == c.front {
		return c.locate(ctx, node)
	}
	return nil
}

// network is the network that carries the side of a partition.
func (c *Cloud) network(from string) *testcontainers.DockerNetwork {
	if from == scenarios.FromDevices {
		return c.front
	}
	return c.back
}

// Stop implements scenarios.Cloud: it keeps every container's log under
// LogDir when the scenario failed, then removes the containers and networks.
func (c *Cloud) Stop(failed bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	c.mu.Lock()
	containers := c.containers
	c.containers = map[string]*testcontainers.DockerContainer{}
	c.mu.Unlock()
	for name, ctr := range containers {
		if failed && c.cfg.LogDir != "" {
			if err := keepLog(ctx, ctr, filepath.Join(c.cfg.LogDir, name+".log")); err != nil {
				errs = append(errs, err)
			}
		}
		if err := testcontainers.TerminateContainer(ctr); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", name, err))
		}
	}
	for _, nw := range []*testcontainers.DockerNetwork{c.front, c.back} {
		if nw != nil {
			if err := nw.Remove(ctx); err != nil {
				errs = append(errs, fmt.Errorf("remove network: %w", err))
			}
		}
	}
	if c.docker != nil {
		c.docker.Close()
	}
	return errors.Join(errs...)
}

// keepLog writes ctr's log to path.
func keepLog(ctx context.Context, ctr *testcontainers.DockerContainer, path string) error {
	rc, err := ctr.Logs(ctx)
	if err != nil {
		return fmt.Errorf("read log for %s: %w", path, err)
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create log dir: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create log file: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(f, rc); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

var loopback = netip.MustParseAddr("127.0.0.1")
