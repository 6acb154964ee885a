package scenarios

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/pki"
)

// KafkaName names a cloud's Kafka node in timeline steps (kill: kafka).
const KafkaName = "kafka"

// NodeName names cloud node i (0-based): node-a, node-b, …
func NodeName(i int) string { return fmt.Sprintf("node-%c", 'a'+i) }

// CloudSpec is the cloud a scenario needs.
type CloudSpec struct {
	// Nodes is how many cloud nodes (role all) share the Kafka node.
	Nodes int
	// RulesDir holds the streaming and PromQL rule files every node loads.
	RulesDir string
	// SeedDemo is the demo fleet the first node registers.
	SeedDemo node.Demo
	// MaxSampleFuture is how far ahead of the wall clock a sample may be
	// (an accelerated twin clock runs ahead).
	MaxSampleFuture time.Duration
	// DataDir is a scratch directory on the runner's machine.
	DataDir string
	// TLS, when set, has the nodes serve MQTT and HTTP over TLS only with
	// its server certificate (signed by its CA, which the runner trusts).
	TLS *pki.DevFiles
}

// Cloud is the platform under test: a Kafka node and cloud nodes, in this
// process (the default) or in containers (ci/cluster). The runner reaches
// it only over the nodes' HTTP APIs and MQTT brokers, as operators and
// devices do, and drives its faults through the methods below, which take
// KafkaName or a node name.
type Cloud interface {
	// Name is what scenario files call this cloud in runOn.
	Name() string
	// Start starts Kafka and spec.Nodes nodes, the first seeding the demo
	// registry, and returns once every node is ready.
	Start(ctx context.Context, spec CloudSpec) error
	// Endpoints returns where the runner reaches a node: the base URL of
	// its HTTP API and its MQTT address; both "" while it is down.
	Endpoints(node string) (apiURL, mqttAddr string)
	// Token is an admin token of the cloud.
	Token() string
	// Kill stops a node or Kafka at once (a container gets SIGKILL).
	Kill(ctx context.Context, name string) error
	// Revive starts a killed node or Kafka again on its data.
	Revive(ctx context.Context, name string) error
	// Pause freezes a node or Kafka (its connections stay open, unanswered); Resume thaws it.
	Pause(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
	// Partition cuts a node off one side: FromKafka (Kafka and the other
	// nodes; devices still reach it) or FromDevices (the devices and the
	// runner; it still reaches Kafka). Heal undoes it. A cloud that cannot
	// answers ErrUnsupported; the runner then cuts FromDevices at its MQTT
	// balancer instead.
	Partition(ctx context.Context, node, from string) error
	Heal(ctx context.Context, node, from string) error
	// Stop stops everything; failed says the scenario failed (a cloud may keep its logs then).
	Stop(failed bool) error
}

// Clouds scenario files name in runOn.
const (
	CloudInProcess  = "inprocess"
	CloudContainers = "containers"
)

// ErrUnsupported is what a cloud answers for a fault it cannot inject.
var ErrUnsupported = errors.New("not supported by this cloud")

// inProcessUnsupported lists the step actions the in-process cloud cannot do, and why.
var inProcessUnsupported = map[string]string{
	"pause":                "freezing a goroutine set is not possible; SIGSTOP a container instead",
	"resume":               "freezing a goroutine set is not possible; SIGSTOP a container instead",
	"partition from kafka": "in-process nodes share one loopback Kafka listener, so one cannot be cut off alone",
}
