package scenarios

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestShippedScenarios runs every shipped scenario on its own stack.
func TestShippedScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole platform per scenario")
	}
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		sc, err := Load(f)
		require.NoError(t, err)
		if !slices.Contains(sc.Topology.RunOn, CloudInProcess) {
			continue // the container suite (ci/) runs it
		}
		t.Run(strings.TrimSuffix(f, ".yaml"), func(t *testing.T) {
			res, err := Run(context.Background(), f)
			var sum bytes.Buffer
			require.NoError(t, RunOutcome{Result: res, Err: err}.WriteSummary(&sum))
			t.Log(sum.String())
			require.NoError(t, err)
			require.NotEmpty(t, res.Assertions)
			require.Empty(t, res.Failed(), sum.String())
		})
	}
}

// TestFailingScenarioExplainsItself runs a scenario made to fail: each
// failed assertion names its line, what was expected and found, and the
// timeline before it; the JUnit report has one failing case per assertion.
func TestFailingScenarioExplainsItself(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole platform")
	}
	file := filepath.Join("testdata", "never-fires.yaml")
	res, err := Run(context.Background(), file)
	require.NoError(t, err)
	failed := res.Failed()
	require.Len(t, failed, 2)
	require.Equal(t, 14, failed[0].Line)
	require.Contains(t, failed[0].Expected, "1 episode(s), fired at sim 0s…1m0s")
	require.Equal(t, "no alert", failed[0].Actual)
	require.Contains(t, failed[1].Failure(file), "never-fires.yaml:15: promql")
	require.Contains(t, failed[1].Expected, "≥ 90")
	require.Contains(t, failed[1].Actual, "WTRM_TrmTmpGbxOil")
	require.Contains(t, failed[1].Timeline, "inject icing on turbine WT01")

	var xml bytes.Buffer
	require.NoError(t, WriteJUnit(&xml, []RunOutcome{{Result: res}}))
	require.Contains(t, xml.String(), `<testsuite name="never-fires" tests="3" failures="2" errors="0"`)
	require.Equal(t, 2, strings.Count(xml.String(), "<failure "))
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"unknown field", "name: x\ntimeline:\n  - at: 1m\n    inject: {turbine: WT01, falt: icing}\n", "scenario:4: field falt not found"},
		{"no name", "topology: {turbines: 1}\n", ErrName.Error()},
		{"bad edges", "name: x\ntopology: {edges: triple}\n", `edges "triple"`},
		{"no time", "name: x\ntimeline:\n  - cut: GW01\n", "line 3: timeline[0]: invalid step: needs at"},
		{"two actions", "name: x\ntimeline:\n  - at: 1s\n    cut: GW01\n    kill: GW01\n", "one action per step"},
		{"unknown edge", "name: x\ntopology: {edges: ha}\ntimeline:\n  - at: 1s\n    kill: GW01\n", `no edge, node or kafka named "GW01" (there are GW01/a, GW01/b, node-a, kafka)`},
		{"cut without edge", "name: x\ntopology: {edges: none}\ntimeline:\n  - at: 1s\n    cut: GW01\n", `no edge polls gateway "GW01"`},
		{"unknown load", "name: x\nassert:\n  - noLoss: {load: nope}\n", `line 3: assert[0]: invalid assertion: no load step named "nope"`},
		{"two checks", "name: x\nassert:\n  - noLoss: {load: a}\n    promql: {query: up, min: 1}\n", "exactly one of"},
		{"bad window", "name: x\nassert:\n  - alert: {rule: r, fired: [2m, 1m]}\n", "fired must be [from, to]"},
		{"duplicate name", "name: x\ntimeline:\n  - at: 0s\n    load: {name: a, devices: 1, rate: 1, duration: 1s}\n  - at: 0s\n    storm: {name: a, rate: 1, duration: 1s}\n", `line 5: timeline[1]: invalid step: name "a" used twice`},
		{"bad percentile", "name: x\ntimeline:\n  - at: 0s\n    load: {name: a, devices: 1, rate: 1, duration: 1s}\nassert:\n  - latency: {load: a, kind: puback, percentile: p42, below: 1s}\n", "percentile"},
		{"pause in-process", "name: x\ntimeline:\n  - at: 1s\n    pause: node-a\n", "pause runs on containers only (runOn: [containers])"},
		{"partition from kafka in-process", "name: x\ntopology: {nodes: 2}\ntimeline:\n  - at: 1s\n    partition: {node: node-b, from: kafka}\n", "runs on containers only"},
		{"partition from nowhere", "name: x\ntopology: {nodes: 2}\ntimeline:\n  - at: 1s\n    partition: {node: node-b, from: space}\n", `partition from "space": want devices or kafka`},
		{"unknown node", "name: x\ntopology: {nodes: 2, runOn: [containers]}\ntimeline:\n  - at: 1s\n    pause: node-c\n", "pause and resume take a node or kafka"},
		{"no cloud", "name: x\ntopology: {runOn: []}\n", "runOn is empty"},
		{"tls in containers", "name: x\ntopology: {tls: true, runOn: [inprocess, containers]}\n", "tls runs on the in-process cloud only"},
		{"bad cloud", "name: x\ntopology: {runOn: [cloud9]}\n", `runOn "cloud9": want inprocess or containers`},
		{"bad latency kind", "name: x\ntimeline:\n  - at: 0s\n    load: {name: a, devices: 1, rate: 1, duration: 1s}\nassert:\n  - latency: {load: a, kind: warp, percentile: p99, below: 1s}\n", "latency needs kind (connect, puback, e2e, send_lag, reconnect, ack_gap)"},
		{"good", "name: x\ntimeline:\n  - at: 0s\n    load: {name: a, devices: 1, rate: 1, duration: 1s}\n  - wall: 2s\nassert:\n  - noLoss: {load: a}\n  - alert: {rule: r}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(tc.yaml))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, 2, s.Topology.Turbines)
			require.Equal(t, EdgesNormal, s.Topology.Edges)
			require.Equal(t, 30*time.Second, s.Topology.Settle)
			require.Equal(t, 1, *s.Assert[1].Alert.Count)
		})
	}
}

// TestShippedScenariosParse keeps every shipped file and the bad example loadable (or not).
func TestShippedScenariosParse(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	for _, f := range append(files, filepath.Join("testdata", "never-fires.yaml")) {
		_, err := Load(f)
		require.NoError(t, err, f)
	}
	_, err = Load(filepath.Join("testdata", "bad-field.bad.yaml"))
	require.ErrorContains(t, err, "bad-field.bad.yaml:4: field falt not found", "the file and line")
	_, err = Load("missing.yaml")
	require.ErrorIs(t, err, os.ErrNotExist)
}
