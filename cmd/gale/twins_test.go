package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/pki"
)

func TestTwinsCommandErrors(t *testing.T) {
	dir := t.TempDir()
	good := testkit.WriteFile(t, dir, "fleet.yaml", "farms: [{site: a, count: 1, mast: M1}]\n")
	badSecrets := testkit.WriteFile(t, dir, "secrets.yaml", "- not a map\n")
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "no config", args: nil, wantCode: 2}, // the flag set explains it on stderr
		{name: "missing file", args: []string{"--config", filepath.Join(dir, "nope.yaml")}, wantCode: 1, wantErr: "read config: open"},
		{name: "invalid fleet", args: []string{"--config", "../../twins/testdata/speed.bad.yaml"}, wantCode: 1, wantErr: "speed must be between 1 and 10000"},
		{name: "unknown field", args: []string{"--config", "../../twins/testdata/unknown-field.bad.yaml"}, wantCode: 1, wantErr: "field colour not found"},
		{name: "bad secrets file", args: []string{"--config", good, "--secrets", badSecrets}, wantCode: 1, wantErr: "productKey/deviceKey: secret"},
		{name: "no way to get secrets", args: []string{"--config", good, "--http-addr", "127.0.0.1:0", "--log-level", "error"}, wantCode: 1,
			wantErr: "not in the secrets file, and no --token-file"},
		{name: "bad flag", args: []string{"--config", good, "--interval", "soon"}, wantCode: 2},
		{name: "missing CA file", args: []string{"--config", good, "--ca-file", filepath.Join(dir, "ca.crt")}, wantCode: 1, wantErr: "read CA file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := run(ctx, append([]string{"twins"}, c.args...), io.Discard, &stderr)
			require.Error(t, err)
			require.Equal(t, c.wantCode, exitCode(err), "%v", err)
			if c.wantErr != "" {
				require.Contains(t, err.Error()+stderr.String(), c.wantErr)
			}
		})
	}
}

// TestTwinsCommandRunsFleetAgainstCloud runs `gale twins` with a fleet whose
// turbines sit behind a Modbus gateway and whose met mast connects directly,
// against a node seeded with the demo registry; the secrets come from the
// API. Over TLS, the met mast and the API calls trust the node's CA (--ca-file).
func TestTwinsCommandRunsFleetAgainstCloud(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plaintext", true: "tls"}[useTLS], func(t *testing.T) {
			cfg := nodetest.Config(t)
			var extra []string
			if useTLS {
				files := nodetest.TLS(t, &cfg, pki.ClientAuthNone)
				extra = []string{"--ca-file", files.CA}
			}
			h := nodetest.Start(t, cfg)
			require.NoError(t, node.SeedDemo(context.Background(), h.Node.Registry, node.Demo{Turbines: 2}))
			fleet := testkit.WriteFile(t, t.TempDir(), "fleet.yaml", `
farms:
  - {site: demo-farm, count: 2, mast: MM01}
gateways:
  - {id: GW01, addr: "127.0.0.1:0", units: [{device: WT01}, {device: WT02}]}
`)
			httpAddr := testkit.FreeAddr(t, "tcp")

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var stdout bytes.Buffer
			wg.Go(func() {
				require.NoError(t, run(ctx, append([]string{"twins", "--config", fleet, "--mqtt-addr", h.MQTTAddr(), "--api-url", h.BaseURL,
					"--token-file", h.Node.TokenFile, "--http-addr", httpAddr, "--interval", "1s", "--log-level", "warn"}, extra...), &stdout, io.Discard))
			})
			t.Cleanup(func() { cancel(); wg.Wait() })

			require.Eventually(t, func() bool { return len(h.Query(t, `WMET_HorWdSpd{device="MM01",site="demo-farm"}`, time.Time{})) == 1 },
				20*time.Second, 50*time.Millisecond, "the met mast posts directly")
			get := func(path string) string {
				resp, err := http.Get("http://" + httpAddr + path)
				require.NoError(t, err)
				defer resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode)
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				return string(b)
			}
			require.Contains(t, get("/twins/v1/turbines"), `"deviceKey":"WT02"`)
			require.Contains(t, get("/metrics"), "gale_twins_direct_connected 1\n")
			require.True(t, strings.Contains(stdout.String(), "/twins/v1/turbines"))
		})
	}
}
