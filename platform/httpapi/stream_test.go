package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/registry"
)

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// openStream opens GET path with token and returns the status and a func reading the next event (ok false at the end).
func openStream(t *testing.T, s *acctServer, token, path string) (int, func() (sseEvent, bool)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	sc := bufio.NewScanner(resp.Body)
	return resp.StatusCode, func() (sseEvent, bool) {
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "" && ev.name != "":
				return ev, true
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:]
			}
		}
		return ev, false
	}
}

// seedBeta adds org beta's site south with device sensor/b1, a latest value of
// each device, and a firing alert of beta's (acme's is startAcctServer's).
func seedBeta(t *testing.T, s *acctServer, latest *ingest.Latest) {
	t.Helper()
	ctx := context.Background()
	_, err := s.reg.PutAsset(ctx, api.Asset{ID: "south", Kind: api.AssetSite, Parent: "beta"})
	require.NoError(t, err)
	_, err = s.reg.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "b1", Site: "south", Enabled: true})
	require.NoError(t, err)
	now := time.Now().UnixMilli()
	latest.Update("sensor/d1", ingest.Point{Point: "T", Time: now, Value: 21.5})
	latest.Update("sensor/b1", ingest.Point{Point: "T", Time: now, Value: 99})
	_, _, err = s.reg.FireAlert(ctx, api.Alert{Rule: "hot", Severity: "major", Source: "stream", Key: "sensor/b1", Device: "sensor/b1",
		Site: "south", Org: "beta", State: api.AlertFiring, StartedAt: now, FiredAt: now})
	require.NoError(t, err)
}

// TestStreamConfinedToCallersOrg: an org's viewer streams its own devices'
// values and alerts only; another org's site or device is not found; a
// cluster admin sees both.
func TestStreamConfinedToCallersOrg(t *testing.T) {
	s := startAcctServer(t)
	seedBeta(t, s, s.srv.deps.Latest)

	code, next := openStream(t, s, s.tokens["viewer"], "/api/v1/stream?once=true")
	require.Equal(t, http.StatusOK, code)
	ev, ok := next()
	require.True(t, ok)
	require.Equal(t, "latest", ev.name)
	var latest latestEvent
	require.NoError(t, json.Unmarshal([]byte(ev.data), &latest))
	require.Contains(t, latest.Devices, "sensor/d1")
	require.NotContains(t, latest.Devices, "sensor/b1", "another org's device")
	require.Equal(t, 21.5, latest.Devices["sensor/d1"][0].Value)
	ev, ok = next()
	require.True(t, ok)
	require.Equal(t, "alerts", ev.name)
	var alerts []api.Alert
	require.NoError(t, json.Unmarshal([]byte(ev.data), &alerts))
	require.Len(t, alerts, 1)
	require.Equal(t, "acme", alerts[0].Org)
	_, ok = next()
	require.False(t, ok, "once=true ends after one snapshot")

	for _, path := range []string{"/api/v1/stream?site=south", "/api/v1/stream?device=sensor/b1", "/api/v1/stream?site=nowhere", "/api/v1/stream?device=%00/%ff"} {
		code, b := s.call(t, s.tokens["viewer"], http.MethodGet, path, nil)
		require.Equal(t, http.StatusNotFound, code, "%s: %s", path, b)
		require.Contains(t, string(b), `"error"`)
	}

	code, next = openStream(t, s, s.tokens["cluster-admin"], "/api/v1/stream?once=true")
	require.Equal(t, http.StatusOK, code)
	ev, _ = next()
	require.NoError(t, json.Unmarshal([]byte(ev.data), &latest))
	require.Contains(t, latest.Devices, "sensor/b1")
}

// TestStreamBadInput: a bad interval is a 400 with a message; no token is a 401.
func TestStreamBadInput(t *testing.T) {
	s := startAcctServer(t)
	for _, q := range []string{"interval=1ms", "interval=2h", "interval=abc", "interval=-1s", "interval=NaN"} {
		code, b := s.call(t, s.tokens["viewer"], http.MethodGet, "/api/v1/stream?"+q, nil)
		require.Equal(t, http.StatusBadRequest, code, q)
		require.Contains(t, string(b), "interval must be a duration")
	}
	code, _ := s.call(t, "", http.MethodGet, "/api/v1/stream", nil)
	require.Equal(t, http.StatusUnauthorized, code)
}

// TestStreamSendsChangesAndEndsOnRevoke: after the first snapshot a stream
// sends only changed points, and ends when its token is revoked.
func TestStreamSendsChangesAndEndsOnRevoke(t *testing.T) {
	s := startAcctServer(t)
	latest := s.srv.deps.Latest
	latest.Update("sensor/d1", ingest.Point{Point: "T", Time: 1, Value: 1})
	latest.Update("sensor/d1", ingest.Point{Point: "H", Time: 1, Value: 50})
	secret, tok, err := s.reg.IssueToken(context.Background(), registry.TokenSpec{Name: "wall", Org: "acme", Role: api.RoleViewer, TTL: time.Hour})
	require.NoError(t, err)
	code, next := openStream(t, s, secret, "/api/v1/stream?interval=250ms&device=sensor/d1")
	require.Equal(t, http.StatusOK, code)
	ev, _ := next()
	var first latestEvent
	require.NoError(t, json.Unmarshal([]byte(ev.data), &first))
	require.Len(t, first.Devices["sensor/d1"], 2)

	latest.Update("sensor/d1", ingest.Point{Point: "T", Time: 2, Value: 2})
	for {
		ev, ok := next()
		require.True(t, ok)
		if ev.name != "latest" {
			continue
		}
		var e latestEvent
		require.NoError(t, json.Unmarshal([]byte(ev.data), &e))
		if pts := e.Devices["sensor/d1"]; len(pts) > 0 {
			require.Equal(t, []ingest.Point{{Point: "T", Time: 2, Value: 2}}, pts, "only the changed point")
			break
		}
	}

	_, err = s.reg.RevokeToken(context.Background(), tok.ID)
	require.NoError(t, err)
	for {
		ev, ok := next()
		require.True(t, ok, "the stream ended without saying why")
		if ev.name == "end" {
			require.Contains(t, ev.data, "token no longer valid")
			break
		}
	}
	_, ok := next()
	require.False(t, ok)
}

// TestStreamLimit: a node serves at most maxStreams streams at once; one more is a 503.
func TestStreamLimit(t *testing.T) {
	s := startAcctServer(t)
	for range maxStreams {
		code, _ := openStream(t, s, s.tokens["viewer"], "/api/v1/stream?interval=1m")
		require.Equal(t, http.StatusOK, code)
	}
	code, b := s.call(t, s.tokens["viewer"], http.MethodGet, "/api/v1/stream", nil)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, string(b), "streams")
}
