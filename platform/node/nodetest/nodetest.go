// Package nodetest starts in-process Gale nodes for tests and offers the
// HTTP calls tests make against them.
package nodetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/pki"
)

// Harness is a running node and a client for its API.
type Harness struct {
	Node    *node.Node
	Config  node.Config
	Token   string
	BaseURL string
	// Client calls the API; with TLS it trusts the node's CA.
	Client *http.Client
	cancel context.CancelFunc
	done   chan error
}

// Config returns a node config on free loopback ports in a fresh temp dir.
func Config(t testing.TB) node.Config {
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.MQTT.Addr = "127.0.0.1:0"
	cfg.Kafka.EmbeddedAddr = "127.0.0.1:0"
	return cfg
}

// TLS makes a development CA and server certificate under cfg's data dir
// (DATA/tls, as gale up --tls does) and serves MQTT (with clientAuth) and
// HTTP over TLS. It returns the files; clients trust files.CA.
func TLS(t testing.TB, cfg *node.Config, clientAuth string) pki.DevFiles {
	t.Helper()
	files, err := cfg.DevTLS(nil, clientAuth, time.Now())
	require.NoError(t, err)
	return files
}

// Start runs a node with cfg (see Config) and stops it at cleanup. When
// cfg's HTTP API serves TLS, the harness's client trusts the ca.crt next to
// the server certificate (the layout of TLS and gale up --tls).
func Start(t testing.TB, cfg node.Config) *Harness {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("GALE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	require.NoError(t, cfg.Complete())
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg, log, nil)
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	tok, err := os.ReadFile(n.TokenFile)
	require.NoError(t, err)
	h := &Harness{Node: n, Config: cfg, Token: string(bytes.TrimSpace(tok)), BaseURL: n.APIURL(), Client: http.DefaultClient, cancel: cancel, done: make(chan error, 1)}
	if cfg.HTTP.TLS.Enabled() {
		ca := filepath.Join(filepath.Dir(cfg.HTTP.TLS.CertFile), pki.CACertFile)
		tlsCfg, err := pki.ClientConfig{CAFile: ca}.Load()
		require.NoError(t, err)
		h.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}
	}
	go func() { h.done <- n.Run(ctx) }()
	t.Cleanup(h.Stop)
	waitOK(t, h.Client, h.BaseURL+"/readyz", 20*time.Second)
	return h
}

// RequireTool returns the path of a real peer from a Debian package (e.g.
// mosquitto_pub from mosquitto-clients), or skips the test saying how to install it.
func RequireTool(t testing.TB, tool, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed: apt-get install %s (.ci/run installs it)", tool, pkg)
	}
	return path
}

// WaitOK waits up to timeout for a GET of url to answer 200, e.g. a readiness endpoint.
func WaitOK(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	waitOK(t, http.DefaultClient, url, timeout)
}

func waitOK(t testing.TB, client *http.Client, url string, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, timeout, 20*time.Millisecond, "%s did not answer 200", url)
}

// Stop stops the node and waits for it; safe to call twice.
func (h *Harness) Stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	<-h.done
}

// MQTTAddr is the broker address.
func (h *Harness) MQTTAddr() string { return h.Node.MQTTAddr() }

// Do calls the API with the admin token and decodes a JSON answer into out (when non-nil); it returns the status.
func (h *Harness) Do(t testing.TB, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.BaseURL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+h.Token)
	resp, err := h.Client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil && len(b) > 0 {
		require.NoError(t, json.Unmarshal(b, out), "body: %s", b)
	}
	return resp.StatusCode
}

// Sample is one element of an instant-query vector.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Float returns the sample's value.
func (s Sample) Float() float64 {
	var f float64
	fmt.Sscan(s.Value[1].(string), &f)
	return f
}

// Query runs an instant PromQL query through /prometheus/api/v1/query at time at (zero: now).
func (h *Harness) Query(t testing.TB, expr string, at time.Time) []Sample {
	t.Helper()
	var out []Sample
	query(t, h.Client, h.BaseURL+"/prometheus", h.Token, expr, at, &out)
	return out
}

// query runs an instant query at at (zero: now) against the Prometheus HTTP
// API at base, with token when not empty, and decodes its result into result.
func query(t testing.TB, client *http.Client, base, token, expr string, at time.Time, result any) {
	t.Helper()
	q := url.Values{"query": {expr}}
	if !at.IsZero() {
		q.Set("time", fmt.Sprintf("%.3f", float64(at.UnixMilli())/1000))
	}
	req, err := http.NewRequest(http.MethodGet, base+"/api/v1/query?"+q.Encode(), nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result json.RawMessage `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body), "query %q", expr)
	require.Equal(t, "success", body.Status, "query %q: %s", expr, body.Error)
	require.NoError(t, json.Unmarshal(body.Data.Result, result), "query %q", expr)
}

// Series is one series of a range-vector result.
type Series struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"` // [seconds, "value"]
}

// Samples returns the series' values by time in Unix milliseconds.
func (s Series) Samples() map[int64]float64 {
	out := make(map[int64]float64, len(s.Values))
	for _, v := range s.Values {
		var f float64
		fmt.Sscan(v[1].(string), &f)
		out[int64(math.Round(v[0].(float64)*1000))] = f
	}
	return out
}

// QuerySeries runs expr, a range vector, as an instant query at at against the
// Prometheus HTTP API at base: Gale's (BaseURL+"/prometheus", with its token)
// or a Prometheus server's (no token).
func QuerySeries(t testing.TB, base, token, expr string, at time.Time) []Series {
	t.Helper()
	var out []Series
	query(t, http.DefaultClient, base, token, expr, at, &out)
	return out
}

// CreateDevice registers an enabled device through the API and returns it with its secret.
func (h *Harness) CreateDevice(t testing.TB, d api.Device) api.Device {
	t.Helper()
	d.Enabled = true
	var out api.Device
	status := h.Do(t, http.MethodPost, "/api/v1/devices", d, &out)
	require.Equal(t, http.StatusCreated, status, "create device %+v", d)
	return out
}

// SetupProduct creates org "test", site "test-site" and product pk whose measurepoints are float points named points.
func (h *Harness) SetupProduct(t testing.TB, pk string, points ...string) {
	t.Helper()
	for _, a := range []api.Asset{{ID: "test", Kind: api.AssetOrg}, {ID: "test-site", Kind: api.AssetSite, Parent: "test"}} {
		st := h.Do(t, http.MethodPost, "/api/v1/assets", a, nil)
		require.Contains(t, []int{http.StatusCreated, http.StatusConflict}, st)
	}
	p := api.Product{Key: pk}
	for _, id := range points {
		p.Model.Measurepoints = append(p.Model.Measurepoints, api.Measurepoint{ID: id, Type: api.TypeFloat, Quality: true})
	}
	require.Equal(t, http.StatusCreated, h.Do(t, http.MethodPost, "/api/v1/products", p, nil))
}
