package edge_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/edge"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/pki"
)

// TestEdgeOverTLS runs an edge against a cloud that requires device
// certificates: with the gateway's certificate it logs in, fetches its
// thing models over https and its samples are stored; with another
// device's certificate it is refused.
func TestEdgeOverTLS(t *testing.T) {
	cfg := nodetest.Config(t)
	files := nodetest.TLS(t, &cfg, pki.ClientAuthRequire)
	c := startCloudWith(t, cfg)
	require.Contains(t, c.h.BaseURL, "https://")
	f := startFleet(t, nil)
	ca, err := pki.LoadCA(files.CA, files.CAKey)
	require.NoError(t, err)
	dir := t.TempDir()
	issue := func(pk, dk string) *edge.CloudTLS {
		certFile, keyFile := pki.DeviceFiles(dir, pk, dk)
		require.NoError(t, ca.IssueDevice(certFile, keyFile, pk, dk, time.Now()))
		return &edge.CloudTLS{CAFile: files.CA, CertFile: certFile, KeyFile: keyFile}
	}
	tests := []struct {
		name      string
		tls       *edge.CloudTLS
		connected bool
	}{
		{name: "certificate of another device", tls: issue("wind-turbine", "WT01")},
		{name: "gateway certificate", tls: issue("modbus-gateway", "GW01"), connected: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ecfg := edgeConfig(t, c, f, filepath.Join(t.TempDir(), "edge"))
			ecfg.Cloud.TLS = tc.tls
			ecfg.Cloud.MQTTAddr = c.h.MQTTAddr() // the test proxy parses plaintext MQTT
			refusedBefore := c.h.Metric(t, `gale_broker_rejected_connects_total{reason="cert_mismatch"}`)
			e, stop := runEdge(t, ecfg)
			defer stop()
			if !tc.connected {
				require.Eventually(t, func() bool {
					return c.h.Metric(t, `gale_broker_rejected_connects_total{reason="cert_mismatch"}`) > refusedBefore
				}, 20*time.Second, 20*time.Millisecond, "the mismatched certificate is refused and counted")
				require.Zero(t, metric(t, e, "gale_edge_uplink_connected", nil))
				return
			}
			waitMetric(t, e, "gale_edge_uplink_connected", nil, equal(1), "edge did not log in over TLS")
			require.Eventually(t, func() bool {
				return len(c.h.Query(t, `WTUR_W{device="WT01"}`, time.Time{})) == 1 && len(c.h.Query(t, `WMET_HorWdSpd{device="MM01"}`, time.Time{})) == 1
			}, 20*time.Second, 50*time.Millisecond, "samples stored")
		})
	}
}
