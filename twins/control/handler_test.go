package control_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/clock"
	"github.com/gale-iot/gale/twins/control"
	"github.com/gale-iot/gale/twins/farm"
	"github.com/gale-iot/gale/twins/modbus"
)

func newAPI(tb testing.TB) (http.Handler, *twins.Fleet) {
	tb.Helper()
	fc := farm.DefaultConfig()
	fc.Count = 3
	cfg := twins.Config{Seed: 1, Farms: []farm.Config{fc}, Gateways: []modbus.Config{{ID: "GW01", Addr: "127.0.0.1:0",
		Units: []regmap.Unit{{Device: "WT01"}, {Device: "WT02"}, {Device: "WT03"}}}}}
	f, err := twins.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)),
		twins.WithClock(clock.NewManual(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))))
	require.NoError(tb, err)
	return f.Handler(), f
}

func do(tb testing.TB, h http.Handler, method, path, body string) (int, map[string]any, []any) {
	tb.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var obj map[string]any
	var arr []any
	switch body := strings.TrimSpace(rec.Body.String()); {
	case strings.HasPrefix(body, "["):
		require.NoError(tb, json.Unmarshal([]byte(body), &arr), body)
	case strings.HasPrefix(body, "{"):
		require.NoError(tb, json.Unmarshal([]byte(body), &obj), body)
		require.Equal(tb, "application/json", rec.Header().Get("Content-Type"))
	}
	return rec.Code, obj, arr
}

func TestTurbineFaults(t *testing.T) {
	h, f := newAPI(t)
	tests := []struct {
		name, method, path, body string
		status                   int
		faults                   []any // expected injected faults after the call, nil to skip
		errContains              string
	}{
		{"inject", "POST", "/twins/v1/turbines/WT02/faults", `{"fault":"gearbox_overheat"}`, 200, []any{"gearbox_overheat"}, ""},
		{"inject another", "POST", "/twins/v1/turbines/WT02/faults", `{"fault":"icing"}`, 200, []any{"gearbox_overheat", "icing"}, ""},
		{"unknown fault", "POST", "/twins/v1/turbines/WT02/faults", `{"fault":"lightning"}`, 400, nil, "unknown fault"},
		{"unknown device", "POST", "/twins/v1/turbines/WT99/faults", `{"fault":"icing"}`, 404, nil, "WT99"},
		{"bad json", "POST", "/twins/v1/turbines/WT02/faults", `{"fault":`, 400, nil, "bad request body"},
		{"unknown field", "POST", "/twins/v1/turbines/WT02/faults", `{"fault":"icing","severity":9}`, 400, nil, "unknown field"},
		{"clear one", "DELETE", "/twins/v1/turbines/WT02/faults?fault=icing", "", 200, []any{"gearbox_overheat"}, ""},
		{"clear unknown", "DELETE", "/twins/v1/turbines/WT02/faults?fault=lightning", "", 400, nil, "unknown fault"},
		{"clear all", "DELETE", "/twins/v1/turbines/WT02/faults", "", 200, []any{}, ""},
		{"get one", "GET", "/twins/v1/turbines/WT01", "", 200, []any{}, ""},
		{"get unknown", "GET", "/twins/v1/turbines/WT99", "", 404, nil, "WT99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, obj, _ := do(t, h, tt.method, tt.path, tt.body)
			require.Equal(t, tt.status, status, obj)
			if tt.errContains != "" {
				require.Contains(t, obj["error"], tt.errContains)
			}
			if tt.faults != nil {
				require.Equal(t, tt.faults, obj["faults"])
			}
		})
	}
	wt, _ := f.Turbine("WT02")
	require.Empty(t, wt.Injected())

	status, _, list := do(t, h, "GET", "/twins/v1/turbines", "")
	require.Equal(t, 200, status)
	require.Len(t, list, 3)
	first := list[0].(map[string]any)
	require.Equal(t, "WT01", first["deviceKey"])
	require.Equal(t, "running", first["state"])
	require.Equal(t, 1.0, first["stateCode"])
	require.Equal(t, "demo-farm", first["site"])
	require.Contains(t, first["points"], "WTUR.W")
}

func TestGatewayFaults(t *testing.T) {
	h, f := newAPI(t)
	tests := []struct {
		name, method, path, body string
		status                   int
		nFaults                  int
	}{
		{"exception", "POST", "/twins/v1/gateways/GW01/faults", `{"fault":"exception","code":4,"unit":3}`, 200, 1},
		{"timeout", "POST", "/twins/v1/gateways/GW01/faults", `{"fault":"timeout","unit":1}`, 200, 2},
		{"byte order", "POST", "/twins/v1/gateways/GW01/faults", `{"fault":"byte_order","order":"DCBA"}`, 200, 3},
		{"bad code", "POST", "/twins/v1/gateways/GW01/faults", `{"fault":"exception","code":9}`, 400, -1},
		{"bad unit", "POST", "/twins/v1/gateways/GW01/faults", `{"fault":"stale","unit":300}`, 400, -1},
		{"no such unit", "POST", "/twins/v1/gateways/GW01/faults", `{"fault":"stale","unit":30}`, 400, -1},
		{"unknown kind", "POST", "/twins/v1/gateways/GW01/faults", `{"fault":"gremlins"}`, 400, -1},
		{"unknown gateway", "POST", "/twins/v1/gateways/GW09/faults", `{"fault":"stale"}`, 404, -1},
		{"clear one kind for one unit", "DELETE", "/twins/v1/gateways/GW01/faults?fault=exception&unit=3", "", 200, 2},
		{"clear bad unit", "DELETE", "/twins/v1/gateways/GW01/faults?unit=x", "", 400, -1},
		{"clear bad kind", "DELETE", "/twins/v1/gateways/GW01/faults?fault=gremlins", "", 400, -1},
		{"clear all", "DELETE", "/twins/v1/gateways/GW01/faults", "", 200, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, obj, _ := do(t, h, tt.method, tt.path, tt.body)
			require.Equal(t, tt.status, status, obj)
			if tt.nFaults >= 0 {
				require.Len(t, obj["faults"], tt.nFaults)
				require.Equal(t, "GW01", obj["id"])
			} else {
				require.NotEmpty(t, obj["error"])
			}
		})
	}
	g, _ := f.Gateway("GW01")
	require.Empty(t, g.Faults())
	status, _, list := do(t, h, "GET", "/twins/v1/gateways", "")
	require.Equal(t, 200, status)
	require.Len(t, list, 1)
	require.Len(t, list[0].(map[string]any)["units"], 3)
}

func TestClock(t *testing.T) {
	h, f := newAPI(t)
	status, obj, _ := do(t, h, "GET", "/twins/v1/clock", "")
	require.Equal(t, 200, status)
	require.Equal(t, "2025-01-01T00:00:00Z", obj["now"])
	require.Equal(t, 1.0, obj["speed"])
	require.Equal(t, true, obj["paused"])

	tests := []struct {
		body   string
		status int
		speed  float64
		paused bool
	}{
		{`{"speed":100}`, 200, 100, true},
		{`{"speed":0}`, 400, 100, true},
		{`{"speed":20000}`, 400, 100, true},
		{`{"paused":false}`, 200, 100, false},
		{`{"speed":10000,"paused":true}`, 200, 10000, true},
		{`{"sped":5}`, 400, 10000, true},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			status, obj, _ := do(t, h, "POST", "/twins/v1/clock", tt.body)
			require.Equal(t, tt.status, status, obj)
			require.Equal(t, tt.speed, f.Clock().Speed())
			require.Equal(t, tt.paused, f.Clock().Paused())
		})
	}
	status, _, _ = do(t, h, "PUT", "/twins/v1/clock", "{}")
	require.Equal(t, http.StatusMethodNotAllowed, status)
}

var _ control.Fleet = (*twins.Fleet)(nil)
