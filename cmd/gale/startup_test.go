package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
)

// TestStartupFailuresEndInOneLine runs gale (this test binary as the
// command) into each start-up failure a newcomer meets and expects no panic,
// a last line on stderr that names the cause, and a non-zero exit code.
func TestStartupFailuresEndInOneLine(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	busy := taken.Addr().String()
	dir := t.TempDir()
	file := testkit.WriteFile(t, dir, "file", "")
	badConfig := testkit.WriteFile(t, dir, "bad.yaml", "role: all\nmqtt:\n  nope: 1\n")
	up := func(data string, addrs ...string) []string {
		a := map[string]string{"--http-addr": "127.0.0.1:0", "--mqtt-addr": "127.0.0.1:0", "--kafka-addr": "127.0.0.1:0"}
		for i := 0; i+1 < len(addrs); i += 2 {
			a[addrs[i]] = addrs[i+1]
		}
		args := []string{"up", "--data-dir", data, "--modbus-addr", "127.0.0.1:0", "--turbines", "1"}
		for k, v := range a {
			args = append(args, k, v)
		}
		return args
	}
	for _, tc := range []struct {
		name string
		args []string
		last string // what the last line of stderr says
		code int
	}{
		{"mqtt port in use", up(t.TempDir(), "--mqtt-addr", busy), "gale: listen mqtt on " + busy + ": listen tcp " + busy + ": bind: address already in use", 1},
		{"http port in use", up(t.TempDir(), "--http-addr", busy), "gale: listen http on " + busy + ": listen tcp " + busy + ": bind: address already in use", 1},
		{"kafka port in use", up(t.TempDir(), "--kafka-addr", busy), "gale: start embedded kafka on " + busy + ": listen tcp " + busy + ": bind: address already in use", 1},
		{"data dir not writable", up(filepath.Join(file, "data")), "gale: create data dir: mkdir " + file + ": not a directory", 1},
		{"bad flag", []string{"up", "--no-such-flag"}, "gale: flag provided but not defined: -no-such-flag ('gale up -h' lists the flags)", 2},
		{"bad flag value", []string{"up", "--turbines", "many"}, `gale: invalid value "many" for flag -turbines: parse error ('gale up -h' lists the flags)`, 2},
		{"loadgen bad flag", []string{"loadgen", "--nope"}, "gale loadgen: flag provided but not defined: -nope ('gale loadgen -h' lists the flags)", 2},
		{"stray argument", []string{"cloud", "--config", badConfig, "now"}, `gale: unexpected argument "now" ('gale cloud -h' lists the flags)`, 2},
		{"bad config file", []string{"cloud", "--config", badConfig}, "gale: " + badConfig + ":3: field nope not found in type broker.Config", 1},
		{"missing config file", []string{"cloud", "--config", filepath.Join(dir, "missing.yaml")}, "gale: read config: open " + filepath.Join(dir, "missing.yaml") + ": no such file or directory", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tc.args...)
			cmd.Env = append(os.Environ(), "GALE_TEST_MAIN=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "gale %v: %v\n%s", tc.args, err, stderr.String())
			require.Equal(t, tc.code, exit.ExitCode(), stderr.String())
			require.NotContains(t, stderr.String(), "panic")
			require.NotContains(t, stderr.String(), "goroutine ")
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			require.Contains(t, lines[len(lines)-1], tc.last)
			require.NotContains(t, stdout.String(), "is up", "no banner for a node that did not start")
		})
	}
}

// TestUpFirstScreenIsItsBanner starts gale up at the default log level: the
// libraries' start-up chatter (the TSDB replaying its WAL, mochi attaching
// its listener, the rule manager starting) is left to --log-level debug.
func TestUpFirstScreenIsItsBanner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gale processes")
	}
	// Logged before the node is ready; the rule manager's "Starting rule manager" may come after.
	chatter := []string{"Replaying WAL", "mochi mqtt", "attached listener", "added hook"}
	for _, level := range []string{"info", "debug"} {
		p := newGale(t, false, "--log-level", level)
		out := p.stderr.String() // stdout and stderr, as a terminal shows them
		require.Contains(t, out, "Gale is up.")
		for _, c := range chatter {
			if level == "debug" {
				require.Contains(t, out, c, "debug shows the libraries' chatter")
			} else {
				require.NotContains(t, out, c)
			}
		}
	}
}
