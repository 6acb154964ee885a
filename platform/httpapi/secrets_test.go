package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/audit"
)

// An admin of the device's org (or a cluster admin) rotates its secret:
// the answer carries the new one, the registry has it, the audit log
// records the rotation without the secret; anyone else is refused.
func TestRotateSecret(t *testing.T) {
	s := startAcctServer(t)
	old, _ := s.reg.Device("sensor", "d1")
	for caller, want := range map[string]int{"viewer": http.StatusForbidden, "operator": http.StatusForbidden,
		"beta-admin": http.StatusNotFound, "cluster-viewer": http.StatusForbidden} {
		code, b := s.call(t, s.tokens[caller], http.MethodPost, "/api/v1/devices/sensor/d1/secret", nil)
		require.Equal(t, want, code, "%s: %s", caller, b)
		require.NotContains(t, string(b), old.Secret)
	}
	d, _ := s.reg.Device("sensor", "d1")
	require.Equal(t, old.Secret, d.Secret, "a refused rotation changes nothing")

	seen := map[string]bool{old.Secret: true}
	for _, caller := range []string{"admin", "cluster-admin"} {
		code, b := s.call(t, s.tokens[caller], http.MethodPost, "/api/v1/devices/sensor/d1/secret", nil)
		require.Equal(t, http.StatusOK, code, "%s", b)
		var got struct{ ProductKey, DeviceKey, Secret string }
		require.NoError(t, json.Unmarshal(b, &got))
		require.Len(t, got.Secret, 32)
		require.False(t, seen[got.Secret], "a new secret each time")
		seen[got.Secret] = true
		d, _ := s.reg.Device("sensor", "d1")
		require.Equal(t, got.Secret, d.Secret)
	}
	code, b := s.call(t, s.tokens["admin"], http.MethodPost, "/api/v1/devices/sensor/nope/secret", nil)
	require.Equal(t, http.StatusNotFound, code, "%s", b)

	entries, err := s.srv.deps.Audit.Query(context.Background(), audit.Filter{AllOrgs: true})
	require.NoError(t, err)
	rotations := 0
	for _, e := range entries {
		raw, _ := json.Marshal(e)
		for secret := range seen {
			require.NotContains(t, string(raw), secret)
		}
		if e.Route == "POST /api/v1/devices/{pk}/{dk}/secret" && e.Status == http.StatusOK {
			require.Equal(t, "sensor/d1", e.Target)
			rotations++
		}
	}
	require.Equal(t, 2, rotations)
}

// A product YAML document is checked and answered as JSON; a bad one gets
// a 400 naming the problem; nothing is stored.
func TestProductYAML(t *testing.T) {
	s := startAcctServer(t)
	doc := "productKey: pump\nname: Pump\nmodel:\n  measurepoints:\n    - {id: P.Flow, type: float, unit: m3/h}\n"
	code, b := s.call(t, s.tokens["admin"], http.MethodPost, "/api/v1/product-yaml", doc)
	require.Equal(t, http.StatusOK, code, "%s", b)
	require.Contains(t, string(b), `"productKey":"pump"`)
	require.Contains(t, string(b), `"P.Flow"`)
	_, stored := s.reg.Model("pump")
	require.False(t, stored)
	for doc, want := range map[string]string{
		"productKey: [":                "invalid",
		"productKey: pump\nbogus: 1\n": "bogus",
		"name: no key\n":               "invalid",
		"productKey: pump\nmodel:\n  measurepoints:\n    - {id: X, type: blob}\n": "invalid",
	} {
		code, b := s.call(t, s.tokens["admin"], http.MethodPost, "/api/v1/product-yaml", doc)
		require.Equal(t, http.StatusBadRequest, code, "%q: %s", doc, b)
		require.Contains(t, string(b), want)
	}
}
