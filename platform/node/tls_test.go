package node_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/pki"
)

// tlsNode starts a node serving MQTT (with clientAuth) and HTTP over TLS,
// with product sensor and devices d1 and d2.
func tlsNode(t *testing.T, clientAuth string) (*nodetest.Harness, pki.DevFiles, map[string]api.Device) {
	t.Helper()
	cfg := nodetest.Config(t)
	files := nodetest.TLS(t, &cfg, clientAuth)
	h := nodetest.Start(t, cfg)
	h.SetupProduct(t, "sensor", "Temp")
	devs := map[string]api.Device{}
	for _, dk := range []string{"d1", "d2"} {
		devs[dk] = h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: dk, Site: "test-site"})
	}
	return h, files, devs
}

// deviceCert issues a certificate for sensor/dk from the node's dev CA.
func deviceCert(t *testing.T, files pki.DevFiles, dk string) (certFile, keyFile string) {
	t.Helper()
	ca, err := pki.LoadCA(files.CA, files.CAKey)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, dk+".crt"), filepath.Join(dir, dk+".key")
	require.NoError(t, ca.IssueDevice(certFile, keyFile, "sensor", dk, time.Now()))
	return certFile, keyFile
}

// mosquittoPub posts Temp=value as device d with mosquitto_pub and extra TLS flags.
func mosquittoPub(t *testing.T, h *nodetest.Harness, d api.Device, value float64, tlsArgs ...string) (string, error) {
	t.Helper()
	pub := requireTool(t, "mosquitto_pub", "mosquitto-clients")
	ts := time.Now().UnixMilli()
	cred := api.Sign("pub", d.ProductKey, d.DeviceKey, d.Secret, ts)
	payload := fmt.Sprintf(`{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"Temp":%g},"time":%d}}`, value, ts)
	args := append([]string{"-h", "127.0.0.1", "-p", port(h.MQTTAddr()), "-q", "1", "-i", cred.ClientID, "-u", cred.Username, "-P", cred.Password,
		"-t", api.MeasurepointPostTopic(d.ProductKey, d.DeviceKey), "-m", payload}, tlsArgs...)
	out, err := exec.Command(pub, args...).CombinedOutput()
	return string(out), err
}

// stored reports whether device dk's Temp is value now.
func stored(t *testing.T, h *nodetest.Harness, dk string, value float64) bool {
	s := h.Query(t, `Temp{device="`+dk+`"}`, time.Time{})
	return len(s) == 1 && s[0].Float() == value
}

func TestMQTTOverTLS(t *testing.T) {
	requireTool(t, "mosquitto_pub", "mosquitto-clients") // the counts below need every case run
	h, files, devs := tlsNode(t, pki.ClientAuthOptional)
	d1Cert, d1Key := deviceCert(t, files, "d1")
	tests := []struct {
		name   string
		dev    string
		value  float64
		args   []string
		refuse string // part of mosquitto_pub's error output; empty: accepted
	}{
		{name: "cafile", dev: "d1", value: 1.5, args: []string{"--cafile", files.CA}},
		{name: "own device certificate", dev: "d1", value: 2.5, args: []string{"--cafile", files.CA, "--cert", d1Cert, "--key", d1Key}},
		{name: "certificate of another device", dev: "d2", value: 3.5, args: []string{"--cafile", files.CA, "--cert", d1Cert, "--key", d1Key}, refuse: "not authori"},
		{name: "plaintext", dev: "d2", value: 4.5, refuse: "error"},
		{name: "untrusted server", dev: "d2", value: 5.5, args: []string{"--capath", t.TempDir()}, refuse: "error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := mosquittoPub(t, h, devs[tc.dev], tc.value, tc.args...)
			if tc.refuse == "" {
				require.NoError(t, err, "mosquitto_pub: %s", out)
				require.Eventually(t, func() bool { return stored(t, h, tc.dev, tc.value) }, 10*time.Second, 20*time.Millisecond)
				return
			}
			require.Error(t, err, "mosquitto_pub must be refused: %s", out)
			require.Contains(t, strings.ToLower(out), tc.refuse)
		})
	}
	require.Equal(t, 1.0, h.Metric(t, `gale_broker_rejected_connects_total{reason="cert_mismatch"}`), "the mismatched certificate is counted")
	require.Empty(t, h.Query(t, `Temp{device="d2"}`, time.Time{}), "nothing refused was stored")

	t.Run("plain CONNECT gets no CONNACK", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", h.MQTTAddr(), 5*time.Second)
		require.NoError(t, err)
		defer conn.Close()
		// CONNECT, MQTT 3.1.1, clean session, client id "x".
		_, err = conn.Write([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'x'})
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		b, err := io.ReadAll(conn) // the handshake fails and the server hangs up
		require.NoError(t, err, "the server must close the connection, not wait")
		require.False(t, len(b) > 0 && b[0] == 0x20, "a plain CONNECT must not get a CONNACK: % x", b)
	})
}

func TestMQTTRequiresClientCertificate(t *testing.T) {
	h, files, devs := tlsNode(t, pki.ClientAuthRequire)
	d1Cert, d1Key := deviceCert(t, files, "d1")
	out, err := mosquittoPub(t, h, devs["d1"], 1, "--cafile", files.CA)
	require.Error(t, err, "no client certificate: %s", out)
	out, err = mosquittoPub(t, h, devs["d1"], 2, "--cafile", files.CA, "--cert", d1Cert, "--key", d1Key)
	require.NoError(t, err, "mosquitto_pub: %s", out)
	require.Eventually(t, func() bool { return stored(t, h, "d1", 2) }, 10*time.Second, 20*time.Millisecond)

	// The device SDK with its certificate posts end to end; with d1's certificate d2 is refused.
	for _, tc := range []struct {
		dev, cert string
		refused   bool
	}{{dev: "d2", cert: "d2"}, {dev: "d2", cert: "d1", refused: true}} {
		t.Run(tc.dev+" with the certificate of "+tc.cert, func(t *testing.T) {
			certFile, keyFile := deviceCert(t, files, tc.cert)
			tlsCfg, err := pki.ClientConfig{CAFile: files.CA, CertFile: certFile, KeyFile: keyFile}.Load()
			require.NoError(t, err)
			d := devs[tc.dev]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			dev, err := device.Connect(ctx, device.Config{Broker: h.MQTTAddr(), TLS: tlsCfg, ProductKey: d.ProductKey, DeviceKey: d.DeviceKey, Secret: d.Secret})
			if tc.refused {
				require.ErrorIs(t, err, device.ErrRefused)
				return
			}
			require.NoError(t, err)
			defer dev.Close()
			require.NoError(t, dev.Post(ctx, time.Now(), map[string]any{"Temp": 7.0}))
			require.Eventually(t, func() bool { return stored(t, h, tc.dev, 7) }, 10*time.Second, 20*time.Millisecond)
		})
	}
}

func TestHTTPSAPI(t *testing.T) {
	h, files, _ := tlsNode(t, pki.ClientAuthNone)
	t.Run("curl --cacert", func(t *testing.T) {
		curl := requireTool(t, "curl", "curl")
		out, err := exec.Command(curl, "-sS", "--fail", "--cacert", files.CA, "-H", "Authorization: Bearer "+h.Token,
			h.BaseURL+"/api/v1/devices/sensor/d1").CombinedOutput()
		require.NoError(t, err, "curl: %s", out)
		require.Contains(t, string(out), `"deviceKey":"d1"`)
		out, err = exec.Command(curl, "-sS", h.BaseURL+"/healthz").CombinedOutput()
		require.Error(t, err, "curl without the CA must not trust the server: %s", out)
	})
	t.Run("plain HTTP refused", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", h.Node.HTTPAddr(), 5*time.Second)
		require.NoError(t, err)
		defer conn.Close()
		_, err = fmt.Fprintf(conn, "GET /api/v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", h.Token)
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.Contains(t, string(body), "HTTPS server")
		require.NotContains(t, string(body), "d1")
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", h.Node.HTTPAddr(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}) //nolint:gosec // the test's point
		if err == nil {
			conn.Close()
		}
		require.Error(t, err)
	})
}
