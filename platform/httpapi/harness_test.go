package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/registry/registrytest"
	"github.com/gale-iot/gale/platform/tsdb"
	"github.com/gale-iot/gale/platform/tsdb/tsdbtest"
)

// testServer is a Server on loopback over a TSDB with a few series.
type testServer struct {
	srv   *Server
	url   string
	token string
	reg   *prometheus.Registry
	now   time.Time
	log   *testkit.SyncBuffer
}

// startServer runs a Server with cfg (Addr is set) and query limits qcfg; extra mounts handlers behind the token.
func startServer(t *testing.T, cfg Config, qcfg tsdb.QueryConfig, extra map[string]http.Handler) *testServer {
	t.Helper()
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	reg := prometheus.NewRegistry()
	rg := registrytest.Open(t)
	token, err := rg.CreateToken(context.Background(), "test")
	require.NoError(t, err)
	db, now := tsdbtest.OpenWithSeries(t, 5)
	cfg.Addr = "127.0.0.1:0"
	srv, err := New(cfg, Deps{Registry: rg, Storage: db, Engine: tsdbtest.NewEngine(t, qcfg, log, reg), Gatherer: reg, Extra: extra}, log, reg)
	require.NoError(t, err)
	serve(t, srv)
	return &testServer{srv: srv, url: "http://" + srv.Addr(), token: token, reg: reg, now: now, log: logs}
}

// serve listens and runs srv until the test ends.
func serve(t *testing.T, srv *Server) {
	t.Helper()
	require.NoError(t, srv.Listen())
	testkit.RunUntilEnd(t, srv.Run)
}

// do sends an authenticated request and returns the status, the headers and the body.
func (s *testServer) do(t testing.TB, method, path string, body io.Reader, header http.Header) (int, http.Header, []byte) {
	t.Helper()
	return send(t, method, s.url+path, s.token, body, header)
}

// send sends a request to target with header and token ("" none) and returns
// the status, the headers and the body.
func send(t testing.TB, method, target, token string, body io.Reader, header http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, target, body)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

// query runs an instant query through the Prometheus API.
func (s *testServer) query(t testing.TB, q string) (int, promResponse) {
	t.Helper()
	code, _, b := s.do(t, http.MethodGet, "/prometheus/api/v1/query?"+url.Values{"query": {q}, "time": {fmt.Sprint(s.now.Unix())}}.Encode(), nil, nil)
	var r promResponse
	require.NoError(t, json.Unmarshal(b, &r), string(b))
	return code, r
}

type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

// metric returns the value of the counter or gauge name with the given label values (by name), or -1.
func (s *testServer) metric(t testing.TB, name string, lv map[string]string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := lv[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
