package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/apiclient"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/pki"
)

// TestMain lets the test binary act as the gale command, so tests can run
// and kill -9 a real `gale up` process without building another binary.
func TestMain(m *testing.M) {
	if os.Getenv("GALE_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// galeProc is a `gale up` child process.
type galeProc struct {
	cmd                 *exec.Cmd
	dataDir, http, mqtt string
	kafka               string
	token               string
	stderr              *testkit.SyncBuffer
	// tls runs gale up --tls; client then trusts DATA/tls/ca.crt.
	tls    bool
	client *http.Client
	// gale calls the API with the admin token.
	gale *apiclient.Client
}

// base is the API's base URL.
func (p *galeProc) base() string {
	if p.tls {
		return "https://" + p.http
	}
	return "http://" + p.http
}

// newGale starts `gale up` (with --tls when tls) and extra flags on free
// loopback ports in a fresh data dir.
func newGale(t *testing.T, tls bool, extra ...string) *galeProc {
	t.Helper()
	p := &galeProc{dataDir: t.TempDir(), http: testkit.FreeAddr(t, "tcp"), mqtt: testkit.FreeAddr(t, "tcp"), kafka: testkit.FreeAddr(t, "tcp"), tls: tls}
	startGale(t, p, extra...)
	return p
}

// startGale starts (or restarts) p.
func startGale(t *testing.T, p *galeProc, extra ...string) {
	t.Helper()
	p.stderr = new(testkit.SyncBuffer)
	args := append([]string{"up", "--data-dir", p.dataDir, "--http-addr", p.http, "--mqtt-addr", p.mqtt,
		"--kafka-addr", p.kafka, "--modbus-addr", "127.0.0.1:0", "--turbines", "2", "--log-level", "warn"}, extra...)
	p.client = http.DefaultClient
	if p.tls {
		args = append(args, "--tls")
	}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), "GALE_TEST_MAIN=1")
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	require.Eventually(t, func() bool {
		if p.tls && p.client == http.DefaultClient {
			tlsCfg, err := pki.ClientConfig{CAFile: filepath.Join(p.dataDir, "tls", pki.CACertFile)}.Load()
			if err != nil {
				return false // not made yet
			}
			p.client = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}
		}
		resp, err := p.client.Get(p.base() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "gale up did not become ready: %s", p.stderr)
	tok, err := os.ReadFile(filepath.Join(p.dataDir, "admin.token"))
	require.NoError(t, err)
	p.token = string(bytes.TrimSpace(tok))
	var tlsCfg *tls.Config
	if tr, ok := p.client.Transport.(*http.Transport); ok {
		tlsCfg = tr.TLSClientConfig
	}
	p.gale, err = apiclient.New(p.base(), apiclient.Options{Token: p.token, TLS: tlsCfg})
	require.NoError(t, err)
}

// api calls the API and decodes a JSON answer into out (when non-nil), whatever its status; it returns the status.
func (p *galeProc) api(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	status, b, err := p.gale.Send(context.Background(), method, path, body)
	require.NoError(t, err)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out), "body: %s", b)
	}
	return status
}

// TestKill9KeepsEveryAcknowledgedSample streams QoS 1 samples into a real
// `gale up` process, kills it with SIGKILL mid-stream, restarts it, and
// checks that every sample that got a PUBACK is stored with its own value.
func TestKill9KeepsEveryAcknowledgedSample(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills gale processes")
	}
	p := newGale(t, false)
	require.Equal(t, http.StatusCreated, p.api(t, "POST", "/api/v1/products",
		api.Product{Key: "seq", Model: api.ThingModel{Measurepoints: []api.Measurepoint{{ID: "Seq", Type: api.TypeFloat}}}}, nil))

	const devices = 4
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	acked := make([][]int, devices)
	var wg sync.WaitGroup
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for i := range devices {
		var d api.Device
		require.Equal(t, http.StatusCreated, p.api(t, "POST", "/api/v1/devices",
			map[string]any{"productKey": "seq", "deviceKey": fmt.Sprintf("s%d", i), "site": "demo-farm"}, &d))
		dev, err := device.Connect(ctx, device.Config{Broker: p.mqtt, ProductKey: "seq", DeviceKey: d.DeviceKey, Secret: d.Secret})
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer dev.Close()
			for n := 1; ctx.Err() == nil; n++ {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := dev.Post(pctx, base.Add(time.Duration(n)*time.Millisecond), map[string]any{"Seq": n})
				cancel()
				if err != nil {
					return // the connection died with the process: unacknowledged from here on
				}
				acked[i] = append(acked[i], n)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	_ = p.cmd.Wait()
	stop()
	wg.Wait()

	total := 0
	for i := range acked {
		total += len(acked[i])
		require.NotEmpty(t, acked[i], "device %d got no PUBACK before the kill", i)
	}
	t.Logf("%d samples acknowledged before kill -9", total)

	startGale(t, p)
	for i := range devices {
		expr := fmt.Sprintf(`Seq{device="s%d"}[10m]`, i)
		var stored map[int64]float64
		require.Eventually(t, func() bool {
			stored = p.rangeSamples(t, expr)
			return len(stored) >= len(acked[i])
		}, 60*time.Second, 200*time.Millisecond, "device s%d: %d of %d acknowledged samples stored", i, len(stored), len(acked[i]))
		for _, n := range acked[i] {
			ts := base.Add(time.Duration(n) * time.Millisecond).UnixMilli()
			v, ok := stored[ts]
			require.True(t, ok, "device s%d: acknowledged sample %d lost", i, n)
			require.Equal(t, float64(n), v, "device s%d: sample %d stored with another value", i, n)
		}
	}
}

// rangeSamples runs a range-vector instant query and returns timestamp → value of its one series.
func (p *galeProc) rangeSamples(t *testing.T, expr string) map[int64]float64 {
	var resp struct {
		Data struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	require.Equal(t, http.StatusOK, p.api(t, "GET", "/prometheus/api/v1/query?query="+url.QueryEscape(expr), nil, &resp))
	out := map[int64]float64{}
	for _, r := range resp.Data.Result {
		for _, v := range r.Values {
			var f float64
			fmt.Sscan(v[1].(string), &f)
			out[int64(v[0].(float64)*1000+0.5)] = f
		}
	}
	return out
}

// TestInterruptStopsCleanly sends Ctrl-C (SIGINT) to `gale up` and expects
// a clean exit, then a restart on the same data dir.
func TestInterruptStopsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gale processes")
	}
	p := newGale(t, false)
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "gale up did not exit cleanly: %s", p.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("gale up still running 20s after SIGINT: %s", p.stderr)
	}
	token := p.token
	startGale(t, p)
	require.Equal(t, token, p.token)
	var devices []api.Device
	require.Equal(t, http.StatusOK, p.api(t, "GET", "/api/v1/devices?site=demo-farm", nil, &devices))
	require.Len(t, devices, 4, "2 turbines, their gateway and a met mast, seeded once")
}

func TestCommandLineErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nope"},
		{"up", "--turbines", "0"},
		{"up", "--speed", "20000"},
		{"up", "--no-such-flag"},
		{"up", "extra"},
		{"up", "--log-level", "loud"},
		{"up", "--tls", "--tls-client-auth", "always"},
		{"certs"},
		{"certs", "device", "--pk", "p"},
		{"certs", "device", "--data-dir", "/nonexistent", "--pk", "p", "--dk", "d"},
		{"certs", "nope"},
		{"up", "--turbines", "999", "--direct-turbines", "2"},
		{"scenario", "run"},
		{"scenario", "run", "../../scenarios/node-pause.yaml"}, // containers only: nothing runs
		{"scenario", "run", "../../scenarios/testdata/bad-field.bad.yaml"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, &out, &errb)
		require.Error(t, err, "%v", args)
		require.NotEqual(t, 0, exitCode(err))
	}
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"version"}, &out, &out))
	require.Contains(t, out.String(), "gale ")
}

func TestRulesTestCommand(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"rules", "test", "../../platform/rules/shipped/wind-farm_test.yaml"}, &out, &out))
	require.Contains(t, out.String(), "2 passed, 0 failed")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "r.yaml"), []byte("rules:\n  - {name: hot, type: threshold, point: T, above: 80, for: 20s}\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "r_test.yaml"), []byte(`ruleFiles: [r.yaml]
tests:
  - name: wrong expectation
    devices: {d: {product: p, site: s}}
    series: [{device: d, point: T, interval: 10s, values: "90 90 90 90"}]
    expect: [{rule: hot, key: p/d, fired: 10s}]
`), 0o644))
	out.Reset()
	err := run(context.Background(), []string{"rules", "test", filepath.Join(dir, "r_test.yaml")}, &out, &out)
	require.Error(t, err)
	require.Contains(t, out.String(), "missing: hot p/d fired at 10s, still firing")
	require.Contains(t, out.String(), "unexpected: hot p/d fired at 20s, still firing")
	require.Contains(t, out.String(), "0 passed, 1 failed")

	require.Error(t, run(context.Background(), []string{"rules", "test"}, &out, &out))
	require.Error(t, run(context.Background(), []string{"rules", "nope"}, &out, &out))
	require.Error(t, run(context.Background(), []string{"rules", "test", filepath.Join(dir, "missing.yaml")}, &out, &out))
}

// TestGearboxFaultAlertsOnceThroughTheFleet runs `gale up` with its twin
// farm (turbines behind Modbus gateway twins, polled by edge gateways, on an
// accelerated clock), curtails WT01 with a command through the API, injects a gearbox fault in WT02 through the twin control
// API, and expects exactly one gearbox alert for WT02, fired 60 s of sim time
// after the oil passed 75 °C (give or take one 1 s sample), then one resolution
// once the fault is cleared and the oil cools.
func TestGearboxFaultAlertsOnceThroughTheFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole platform")
	}
	p := newGale(t, false, "--speed", "40")

	// A command through the edge becomes a Modbus write, and its reply comes back through the API.
	var c api.Command
	require.Equal(t, http.StatusOK, p.api(t, "POST", "/api/v1/devices/wind-turbine/WT01/services/setPowerLimit?timeout=30s", map[string]any{"limit": 1500}, &c), "%+v", c)
	require.JSONEq(t, `{"limit":1500}`, string(c.Output))
	var wt01 struct {
		Points map[string]float64 `json:"points"`
	}
	require.Eventually(t, func() bool {
		p.api(t, "GET", "/twins/v1/turbines/WT01", nil, &wt01)
		return wt01.Points["WTUR.DmdW"] == 1500
	}, 10*time.Second, 100*time.Millisecond, "the twin got the setpoint over Modbus")

	require.Equal(t, http.StatusOK, p.api(t, "POST", "/twins/v1/turbines/WT02/faults", map[string]string{"fault": "gearbox_overheat"}, nil))

	var got []api.Alert
	require.Eventually(t, func() bool {
		got = nil
		p.api(t, "GET", "/api/v1/alerts?rule=gearbox-overheat", nil, &got)
		return len(got) > 0
	}, 90*time.Second, 200*time.Millisecond, "no gearbox alert: %s", p.stderr)
	require.Len(t, got, 1)
	a := got[0]
	require.Equal(t, "wind-turbine/WT02", a.Key)
	require.Equal(t, api.AlertFiring, a.State)
	held := time.Duration(a.FiredAt-a.StartedAt) * time.Millisecond
	require.GreaterOrEqual(t, held, 60*time.Second)
	require.LessOrEqual(t, held, 62*time.Second, "fires within for + 2 s of sim time")

	require.Equal(t, http.StatusOK, p.api(t, "DELETE", "/twins/v1/turbines/WT02/faults", nil, nil))
	require.Eventually(t, func() bool {
		got = nil
		p.api(t, "GET", "/api/v1/alerts?rule=gearbox-overheat", nil, &got)
		return len(got) == 1 && got[0].State == api.AlertResolved
	}, 90*time.Second, 200*time.Millisecond, "not resolved: %+v", got)
	var others []api.Alert
	p.api(t, "GET", "/api/v1/alerts?rule=gearbox-overheat", nil, &others)
	require.Len(t, others, 1, "one episode: fired once, resolved once")
}

// TestUpPartitionsFollowCores: the one-process platform makes one partition
// per core, at least 2 and at most 8.
func TestUpPartitionsFollowCores(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for cores, want := range map[int]int{1: 2, 2: 2, 4: 4, 16: 8} {
		runtime.GOMAXPROCS(cores)
		if got := upPartitions(); got != want {
			t.Errorf("%d cores: %d partitions, want %d", cores, got, want)
		}
	}
}
