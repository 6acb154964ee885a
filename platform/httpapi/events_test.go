package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// A device's events are listed newest first to its org and cluster
// callers, not to another org's (404 as a missing device); a bad limit is a 400.
func TestDeviceEventsAPI(t *testing.T) {
	s := startAcctServer(t)
	var evs []api.DeviceEvent
	for i := range 5 {
		evs = append(evs, api.DeviceEvent{Type: api.EventTypeDevice, Org: "acme", Product: "sensor", Device: "d1", Event: "fault",
			Severity: "major", Time: int64(1000 + i), Params: json.RawMessage(`{"code":7}`)})
	}
	require.NoError(t, s.reg.AddDeviceEvents(context.Background(), evs))

	for _, caller := range []string{"viewer", "cluster-viewer"} {
		code, body := s.call(t, s.tokens[caller], http.MethodGet, "/api/v1/devices/sensor/d1/events?limit=2", nil)
		require.Equal(t, http.StatusOK, code, "%s: %s", caller, body)
		var got []api.DeviceEvent
		require.NoError(t, json.Unmarshal(body, &got))
		require.Len(t, got, 2, caller)
		require.Equal(t, int64(1004), got[0].Time, "newest first")
		require.JSONEq(t, `{"code":7}`, string(got[0].Params))
	}
	code, body := s.call(t, s.tokens["beta-admin"], http.MethodGet, "/api/v1/devices/sensor/d1/events", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.NotContains(t, string(body), "fault")
	for _, limit := range []string{"0", "-1", "x", "1001"} {
		code, body = s.call(t, s.tokens["viewer"], http.MethodGet, "/api/v1/devices/sensor/d1/events?limit="+limit, nil)
		require.Equal(t, http.StatusBadRequest, code, limit)
		require.Contains(t, string(body), "limit must be")
	}
}
