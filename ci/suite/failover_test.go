//go:build containers

package suite

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// devicesPerNode devices start on each cloud node.
const devicesPerNode = 8

// partitionFor is how long a node stays cut off: longer than the consumer
// group session timeout (10s), so the group forgets it.
const partitionFor = 15 * time.Second

// summaryFile collects every test's figures (ci/reports is gitignored).
const summaryFile = "../reports/summary.txt"

// TestMain points testcontainers at this machine's Docker without Ryuk (its
// image cannot be pulled) and starts a fresh summary file.
func TestMain(m *testing.M) {
	for k, v := range map[string]string{"TESTCONTAINERS_RYUK_DISABLED": "true", "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1"} {
		if _, ok := os.LookupEnv(k); !ok {
			os.Setenv(k, v)
		}
	}
	if err := os.MkdirAll(filepath.Dir(summaryFile), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "create reports dir:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(summaryFile, []byte("# Gale container suite, "+time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "write summary:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// fault is what a scenario does to the cluster under load. It returns the
// devices it cut off (nil: all) and the nodes that must hold every
// acknowledged sample at the end.
type fault func(t *testing.T, c *cluster, f *fleet) (affected []*loadDevice, check []*cloudNode)

// TestFailover runs steady QoS 1 load from devices spread over two cloud
// nodes, injects a fault, lets the load go on after it, and then requires
// every acknowledged sample, and no other value, in the TSDB of the nodes
// the fault left standing.
func TestFailover(t *testing.T) {
	tests := []struct {
		name  string
		fault fault
	}{
		{"cloud node killed", func(t *testing.T, c *cluster, f *fleet) ([]*loadDevice, []*cloudNode) {
			killed := f.devices[devicesPerNode:] // those that started on node-b
			c.kill(t, c.nodes[1])
			at := time.Now()
			require.Eventually(t, func() bool { return f.ackedSince(at, 1, killed) }, 60*time.Second, 100*time.Millisecond,
				"the killed node's devices publish again through node-a")
			return killed, c.nodes[:1]
		}},
		{"kafka restarted", func(t *testing.T, c *cluster, f *fleet) ([]*loadDevice, []*cloudNode) {
			fails := f.failures()
			c.stopKafka(t)
			require.Eventually(t, func() bool { return f.failures() >= fails+len(f.devices) }, 60*time.Second, 100*time.Millisecond,
				"with Kafka down the brokers withhold PUBACKs and the devices retry")
			c.startKafka(t)
			return nil, c.nodes
		}},
		{"cloud node partitioned", func(t *testing.T, c *cluster, f *fleet) ([]*loadDevice, []*cloudNode) {
			cut := f.devices[devicesPerNode:]
			at := time.Now()
			c.disconnect(t, c.nodes[1])
			require.Eventually(t, func() bool { return f.ackedSince(at, 20, cut) }, 60*time.Second, 100*time.Millisecond,
				"node-b's devices move to node-a")
			time.Sleep(time.Until(at.Add(partitionFor)))
			c.reconnect(t, c.nodes[1])
			return cut, c.nodes
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			c := startCluster(t, "node-a", "node-b")
			devs := setupDevices(t, c.nodes[0].api, 2*devicesPerNode)
			require.Eventually(t, func() bool { return c.nodes[1].api.hasDevice(devs[len(devs)-1]) }, 30*time.Second, 100*time.Millisecond,
				"the devices reach node-b through the registry change log")
			f := startFleet(t, []string{c.nodes[0].mqttAddr, c.nodes[1].mqttAddr}, devs)
			require.Eventually(t, func() bool { return f.ackedSince(time.Time{}, 100, nil) }, 60*time.Second, 50*time.Millisecond, "steady load")

			affected, check := tt.fault(t, c, f)
			healed := time.Now()
			recovered := assert.Eventually(t, func() bool { return f.ackedSince(healed, 100, nil) }, 60*time.Second, 100*time.Millisecond,
				"every device publishes again after the fault")
			requireRunning(t, check)
			require.True(t, recovered)
			f.stop()

			for _, n := range check {
				var l ledger
				require.Eventually(t, func() bool {
					stored, err := n.api.storedSeq(time.Since(f.t0) + time.Minute)
					if err != nil {
						t.Logf("%s: %v", n.id, err)
						return false
					}
					l = f.check(stored)
					return l.Lost == 0 && l.Wrong == 0
				}, 60*time.Second, 500*time.Millisecond, "%s stores every acknowledged sample: %+v", n.id, l)
				report(t, n.id, l, f, affected, time.Since(start))
			}
		})
	}
}

// report logs a node's ledger and the fleet's figures and appends them to the summary file.
func report(t *testing.T, node string, l ledger, f *fleet, affected []*loadDevice, took time.Duration) {
	t.Helper()
	if affected == nil {
		affected = f.devices
	}
	gaps := longestGaps(affected)
	line := fmt.Sprintf("%s on %s: devices=%d acknowledged=%d stored=%d lost=%d wrong=%d stored_unacknowledged=%d publish_failures=%d longest_gap_max=%s longest_gap_median=%s (%d devices affected) test_time=%s",
		t.Name(), node, len(f.devices), l.Acked, l.Stored, l.Lost, l.Wrong, l.Unacked, f.failures(),
		gaps[len(gaps)-1].Round(time.Millisecond), gaps[len(gaps)/2].Round(time.Millisecond), len(affected), took.Round(time.Second))
	t.Log(line)
	fh, err := os.OpenFile(summaryFile, os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(t, err, "open summary")
	defer fh.Close()
	_, err = fmt.Fprintln(fh, line)
	require.NoError(t, err, "write summary")
}
