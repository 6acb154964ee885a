// Package nodetest starts in-process Gale nodes for tests and offers the
// HTTP calls tests make against them.
package nodetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/apiclient"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/pki"
)

// Harness is a running node and a client for its API.
type Harness struct {
	Node    *node.Node
	Config  node.Config
	Token   string
	BaseURL string
	// API calls the API with the admin token; with TLS it trusts the node's CA.
	API *apiclient.Client
	// Client is a plain HTTP client (no token) that trusts the node's CA.
	Client *http.Client
	tls    *tls.Config // the node's CA, when its API serves TLS
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
	h := attach(t, n, cfg)
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- n.Run(ctx) }()
	t.Cleanup(h.Stop)
	waitOK(t, h.Client, h.BaseURL+"/readyz", 20*time.Second)
	return h
}

// Attach is a harness for node n with config cfg that its caller runs (and
// stops); it waits until n is ready.
func Attach(t testing.TB, n *node.Node, cfg node.Config) *Harness {
	t.Helper()
	h := attach(t, n, cfg)
	waitOK(t, h.Client, h.BaseURL+"/readyz", 30*time.Second)
	return h
}

// attach builds the clients of n's API: with its admin token, and when the
// API serves TLS, trusting the ca.crt next to the server certificate.
func attach(t testing.TB, n *node.Node, cfg node.Config) *Harness {
	t.Helper()
	tok, err := os.ReadFile(n.TokenFile)
	require.NoError(t, err)
	h := &Harness{Node: n, Config: cfg, Token: string(bytes.TrimSpace(tok)), BaseURL: n.APIURL(), Client: http.DefaultClient}
	if cfg.HTTP.TLS.Enabled() {
		ca := filepath.Join(filepath.Dir(cfg.HTTP.TLS.CertFile), pki.CACertFile)
		h.tls, err = pki.ClientConfig{CAFile: ca}.Load()
		require.NoError(t, err)
		h.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: h.tls}, Timeout: 30 * time.Second}
	}
	h.API, err = apiclient.New(h.BaseURL, apiclient.Options{Token: h.Token, TLS: h.tls})
	require.NoError(t, err)
	return h
}

// As is a harness of the same node whose API calls carry token instead.
func (h *Harness) As(t testing.TB, token string) *Harness {
	t.Helper()
	c := *h
	c.Token = token
	var err error
	c.API, err = apiclient.New(h.BaseURL, apiclient.Options{Token: token, TLS: h.tls})
	require.NoError(t, err)
	return &c
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

// Do calls the API with the admin token and decodes a JSON answer into out (when non-nil), whatever its status; it returns the status.
func (h *Harness) Do(t testing.TB, method, path string, body, out any) int {
	t.Helper()
	status, b, err := h.API.Send(context.Background(), method, path, body)
	require.NoError(t, err)
	if out != nil && len(b) > 0 {
		require.NoError(t, json.Unmarshal(b, out), "body: %s", b)
	}
	return status
}

// Sample is one element of an instant-query vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Float returns the sample's value.
func (s Sample) Float() float64 { return s.Value }

// Query runs an instant PromQL query (a vector or a scalar) at time at (zero: now).
func (h *Harness) Query(t testing.TB, expr string, at time.Time) []Sample {
	t.Helper()
	vec, err := h.API.Prom.Vector(context.Background(), expr, at)
	require.NoError(t, err)
	out := make([]Sample, len(vec))
	for i, s := range vec {
		out[i] = Sample{Metric: labels(s.Metric), Value: float64(s.Value)}
	}
	return out
}

func labels(m model.Metric) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[string(k)] = string(v)
	}
	return out
}

// Series is one series of a range-vector result.
type Series struct {
	Metric  map[string]string
	samples map[int64]float64
}

// Samples returns the series' values by time in Unix milliseconds.
func (s Series) Samples() map[int64]float64 { return s.samples }

// QuerySeries runs expr, a range vector, as an instant query at at against the
// Prometheus HTTP API at base: Gale's (BaseURL+"/prometheus", with its token)
// or a Prometheus server's (no token).
func QuerySeries(t testing.TB, base, token, expr string, at time.Time) []Series {
	t.Helper()
	p, err := apiclient.NewPrometheus(base, apiclient.Options{Token: token})
	require.NoError(t, err)
	m, err := p.Matrix(context.Background(), expr, at)
	require.NoError(t, err)
	out := make([]Series, len(m))
	for i, s := range m {
		out[i] = Series{Metric: labels(s.Metric), samples: make(map[int64]float64, len(s.Values))}
		for _, v := range s.Values {
			out[i].samples[int64(v.Timestamp)] = float64(v.Value)
		}
	}
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
