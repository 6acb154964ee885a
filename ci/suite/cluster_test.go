//go:build containers

package suite

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// kafkaAlias is the Kafka node's name on the suite's network. `gale kafka`
// listens on the address this name resolves to (the container's own) and
// advertises it, so the cloud nodes reach what it advertises.
const kafkaAlias = "kafka"

// cluster is one Kafka node and two cloud nodes on a network of their own.
type cluster struct {
	docker  *testcontainers.DockerClient
	network *testcontainers.DockerNetwork
	kafka   *testcontainers.DockerContainer
	nodes   []*cloudNode
}

// cloudNode is a `gale cloud` container and the test host's view of it.
type cloudNode struct {
	id        string // nodeID and network alias
	container *testcontainers.DockerContainer
	mqttAddr  string // host:port reachable from the test host
	api       *apiClient
}

// image is the Gale image the suite runs.
func image() string {
	if img := os.Getenv("GALE_IMAGE"); img != "" {
		return img
	}
	return "gale:latest"
}

// startCluster starts Kafka and the cloud nodes ids (role all) and removes
// them, and the network, when t ends; when t failed it keeps their logs first.
func startCluster(t testing.TB, ids ...string) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	docker, err := testcontainers.NewDockerClientWithOpts(ctx)
	require.NoError(t, err, "docker client")
	t.Cleanup(func() { docker.Close() })
	_, err = docker.ImageInspect(ctx, image())
	require.NoError(t, err, "image %s is not built: run `make images` (nothing is pulled)", image())

	nw, err := tcnetwork.New(ctx)
	require.NoError(t, err, "create network")
	testcontainers.CleanupNetwork(t, nw)
	c := &cluster{docker: docker, network: nw}

	c.kafka = startContainer(t, ctx, nw, kafkaAlias,
		testcontainers.WithCmd("kafka", "--data-dir", "/data/kafka", "--addr", kafkaAlias+":9092"),
		loopbackPorts("9092/tcp"), // rather than every port the image exposes, on all interfaces
		testcontainers.WithWaitStrategy(wait.ForLog("Gale Kafka is up").WithStartupTimeout(30*time.Second)))
	for _, id := range ids {
		c.nodes = append(c.nodes, startNode(t, ctx, nw, id))
	}
	return c
}

// nodeConfig is a cloud node's config file (platform/node.Config).
const nodeConfig = `dataDir: /data
nodeID: %s
role: all
http: {addr: "0.0.0.0:8080"}
mqtt: {addr: "0.0.0.0:1883"}
kafka: {brokers: ["%s:9092"]}
`

// startNode starts the cloud node id and waits until it is ready.
func startNode(t testing.TB, ctx context.Context, nw *testcontainers.DockerNetwork, id string) *cloudNode {
	t.Helper()
	ctr := startContainer(t, ctx, nw, id,
		testcontainers.WithCmd("cloud", "--config", "/gale.yaml"),
		testcontainers.WithFiles(testcontainers.ContainerFile{
			Reader:            strings.NewReader(fmt.Sprintf(nodeConfig, id, kafkaAlias)),
			ContainerFilePath: "/gale.yaml",
			FileMode:          0o644,
		}),
		loopbackPorts("8080/tcp", "1883/tcp"),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/readyz").WithPort("8080/tcp").WithStartupTimeout(60*time.Second)))
	rc, err := ctr.CopyFileFromContainer(ctx, "/data/admin.token")
	require.NoError(t, err, "admin token of %s", id)
	defer rc.Close()
	token, err := io.ReadAll(rc)
	require.NoError(t, err)
	n := &cloudNode{id: id, container: ctr, api: &apiClient{token: strings.TrimSpace(string(token))}}
	n.resolvePorts(t, ctx)
	return n
}

// resolvePorts finds where the test host reaches n's HTTP API and MQTT
// broker; Docker publishes them anew when n rejoins the network.
func (n *cloudNode) resolvePorts(t testing.TB, ctx context.Context) {
	t.Helper()
	var err error
	n.api.base, err = n.container.PortEndpoint(ctx, "8080/tcp", "http")
	require.NoError(t, err, "http port of %s", n.id)
	n.mqttAddr, err = n.container.PortEndpoint(ctx, "1883/tcp", "")
	require.NoError(t, err, "mqtt port of %s", n.id)
}

// startContainer runs the Gale image on nw under alias, removes it when t
// ends and, when t failed, writes its log under ci/logs first.
func startContainer(t testing.TB, ctx context.Context, nw *testcontainers.DockerNetwork, alias string, opts ...testcontainers.ContainerCustomizer) *testcontainers.DockerContainer {
	t.Helper()
	opts = append(opts, tcnetwork.WithNetwork([]string{alias}, nw), testcontainers.WithLogger(tclog.TestLogger(t)))
	ctr, err := testcontainers.Run(ctx, image(), opts...)
	testcontainers.CleanupContainer(t, ctr)
	t.Cleanup(func() { keepLog(t, ctr, alias) })
	require.NoError(t, err, "start %s", alias)
	return ctr
}

// loopbackPorts publishes ports on 127.0.0.1 only, on ports Docker picks.
func loopbackPorts(ports ...string) testcontainers.CustomizeRequestOption {
	return func(req *testcontainers.GenericContainerRequest) error {
		if err := testcontainers.WithExposedPorts(ports...).Customize(req); err != nil {
			return err
		}
		return testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{}
			for _, p := range ports {
				hc.PortBindings[network.MustParsePort(p)] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1")}}
			}
		}).Customize(req)
	}
}

// keepLog writes ctr's log to ci/logs/TEST/ALIAS.log when t failed.
func keepLog(t testing.TB, ctr *testcontainers.DockerContainer, alias string) {
	if !t.Failed() || ctr == nil {
		return
	}
	dir := filepath.Join("..", "logs", strings.ReplaceAll(t.Name(), "/", "_"))
	path := filepath.Join(dir, alias+".log")
	err := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rc, err := ctr.Logs(ctx)
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		defer rc.Close()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create log dir: %w", err)
		}
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("create log file: %w", err)
		}
		defer f.Close()
		if _, err := io.Copy(f, rc); err != nil {
			return fmt.Errorf("write log: %w", err)
		}
		return nil
	}()
	if err != nil {
		t.Logf("log of %s not kept: %v", alias, err)
		return
	}
	abs, _ := filepath.Abs(path)
	t.Logf("log of %s: %s", alias, abs)
}

// requireRunning fails t when the container of one of nodes has exited,
// with its exit code and the last line it logged (gale's error).
func requireRunning(t testing.TB, nodes []*cloudNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range nodes {
		st, err := n.container.State(ctx)
		require.NoError(t, err, "state of %s", n.id)
		if st.Running {
			continue
		}
		last := "(log unreadable)"
		if rc, err := n.container.Logs(ctx); err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			last = lines[len(lines)-1]
		}
		require.FailNow(t, "node exited", "%s exited with code %d: %s", n.id, st.ExitCode, last)
	}
}

// kill sends SIGKILL to n's container.
func (c *cluster) kill(t testing.TB, n *cloudNode) {
	t.Helper()
	_, err := c.docker.ContainerKill(context.Background(), n.container.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"})
	require.NoError(t, err, "kill %s", n.id)
}

// stopKafka stops the Kafka container (SIGTERM, SIGKILL after 10s).
func (c *cluster) stopKafka(t testing.TB) {
	t.Helper()
	timeout := 10 * time.Second
	require.NoError(t, c.kafka.Stop(context.Background(), &timeout), "stop kafka")
}

// startKafka starts the stopped Kafka container again, with its data. The
// log line of the first start already satisfies its wait strategy: callers
// wait for what they need (the devices publishing again).
func (c *cluster) startKafka(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, c.kafka.Start(ctx), "start kafka")
}

// disconnect cuts n off the suite's network: from Kafka, and from the test
// host, whose published ports lead through that network.
func (c *cluster) disconnect(t testing.TB, n *cloudNode) {
	t.Helper()
	_, err := c.docker.NetworkDisconnect(context.Background(), c.network.ID, client.NetworkDisconnectOptions{Container: n.container.GetContainerID(), Force: true})
	require.NoError(t, err, "disconnect %s", n.id)
}

// reconnect puts n back on the suite's network under its alias.
func (c *cluster) reconnect(t testing.TB, n *cloudNode) {
	t.Helper()
	ctx := context.Background()
	_, err := c.docker.NetworkConnect(ctx, c.network.ID, client.NetworkConnectOptions{
		Container:      n.container.GetContainerID(),
		EndpointConfig: &network.EndpointSettings{Aliases: []string{n.id}},
	})
	require.NoError(t, err, "reconnect %s", n.id)
	n.resolvePorts(t, ctx)
}
