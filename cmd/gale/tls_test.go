package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/pki"
)

// TestUpTLS runs `gale up --tls` with optional and with required client
// certificates: the banner names the CA; the demo plant (edges and a
// directly connected turbine; with their own certificates when required)
// posts over TLS; curl --cacert reads the API; mosquitto_pub --cafile posts
// (refused when certificates are required), plaintext is refused on both
// ports, and a device certificate of another device is refused.
func TestUpTLS(t *testing.T) {
	for _, clientAuth := range []string{pki.ClientAuthOptional, pki.ClientAuthRequire} {
		t.Run(clientAuth, func(t *testing.T) { testUpTLS(t, clientAuth) })
	}
}

func testUpTLS(t *testing.T, clientAuth string) {
	p := newGale(t, true, "--direct-turbines", "1", "--speed", "10", "--tls-client-auth", clientAuth)
	ca := filepath.Join(p.dataDir, "tls", pki.CACertFile)
	require.Contains(t, p.stderr.String(), "TLS CA:      "+ca)
	require.Contains(t, p.stderr.String(), "https://"+p.http)

	// The plant's edges (WT01, WT02 behind GW01) and direct turbine (WT03) post over TLS.
	require.Eventually(t, func() bool {
		vec, err := p.gale.Prom.Vector(context.Background(), "WTUR_W", time.Time{})
		require.NoError(t, err)
		got := map[model.LabelValue]bool{}
		for _, r := range vec {
			got[r.Metric["device"]] = true
		}
		return got["WT01"] && got["WT02"] && got["WT03"]
	}, 60*time.Second, 200*time.Millisecond, "the plant's samples over TLS: %s", p.stderr)

	curl := nodetest.RequireTool(t, "curl", "curl")
	out, err := exec.Command(curl, "-sS", "--fail", "--cacert", ca, "-H", "Authorization: Bearer "+p.token,
		"https://"+p.http+"/api/v1/devices/wind-turbine/WT03").CombinedOutput()
	require.NoError(t, err, "curl: %s", out)
	require.Contains(t, string(out), `"deviceKey":"WT03"`)
	out, err = exec.Command(curl, "-sS", "http://"+p.http+"/api/v1/devices").CombinedOutput()
	require.NoError(t, err, "curl: %s", out)
	require.Contains(t, string(out), "HTTP request to an HTTPS server", "plain HTTP is refused")

	require.Equal(t, http.StatusCreated, p.api(t, "POST", "/api/v1/products",
		api.Product{Key: "probe", Model: api.ThingModel{Measurepoints: []api.Measurepoint{{ID: "V", Type: api.TypeFloat}}}}, nil))
	devs := map[string]api.Device{}
	for _, dk := range []string{"p1", "p2"} {
		var d api.Device
		require.Equal(t, http.StatusCreated, p.api(t, "POST", "/api/v1/devices",
			map[string]any{"productKey": "probe", "deviceKey": dk, "site": "demo-farm"}, &d))
		devs[dk] = d
	}
	var certOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"certs", "device", "--data-dir", p.dataDir, "--pk", "probe", "--dk", "p1"}, &certOut, &certOut))
	p1Cert, p1Key := pki.DeviceFiles(filepath.Join(p.dataDir, "tls", pki.DevicesDir), "probe", "p1")
	require.Contains(t, certOut.String(), p1Cert)

	pub := nodetest.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	tests := []struct {
		name, dev string
		args      []string
		refused   string // part of mosquitto_pub's output when refused
	}{
		{name: "cafile", dev: "p2", args: []string{"--cafile", ca}, refused: map[string]string{pki.ClientAuthRequire: "error"}[clientAuth]},
		{name: "own certificate", dev: "p1", args: []string{"--cafile", ca, "--cert", p1Cert, "--key", p1Key}},
		{name: "certificate of another device", dev: "p2", args: []string{"--cafile", ca, "--cert", p1Cert, "--key", p1Key}, refused: "not authori"},
		{name: "plaintext", dev: "p2", refused: "error"},
	}
	if clientAuth == pki.ClientAuthRequire {
		gw := filepath.Join(p.dataDir, "tls", pki.DevicesDir, "modbus-gateway_GW01.crt")
		require.FileExists(t, gw, "the plant's devices got certificates")
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := devs[tc.dev]
			ts := time.Now().UnixMilli()
			cred := api.Sign("pub", d.ProductKey, d.DeviceKey, d.Secret, ts)
			value := float64(i + 1)
			args := append([]string{"-h", "127.0.0.1", "-p", p.mqtt[strings.LastIndex(p.mqtt, ":")+1:], "-q", "1",
				"-i", cred.ClientID, "-u", cred.Username, "-P", cred.Password, "-t", api.MeasurepointPostTopic(d.ProductKey, d.DeviceKey),
				"-m", fmt.Sprintf(`{"id":"1","version":"1.0","params":{"measurepoints":{"V":%g},"time":%d}}`, value, ts)}, tc.args...)
			out, err := exec.Command(pub, args...).CombinedOutput()
			if tc.refused != "" {
				require.Error(t, err, "must be refused: %s", out)
				require.Contains(t, strings.ToLower(string(out)), tc.refused)
				return
			}
			require.NoError(t, err, "mosquitto_pub: %s", out)
			require.Eventually(t, func() bool {
				s := p.rangeSamples(t, fmt.Sprintf(`V{device=%q}[1h]`, tc.dev))
				return s[ts] == value
			}, 20*time.Second, 100*time.Millisecond)
		})
	}
}
