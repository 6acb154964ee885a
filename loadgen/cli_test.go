package loadgen

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
)

func TestMainCommandLineErrors(t *testing.T) {
	tokenFile := testkit.WriteFile(t, t.TempDir(), "admin.token", "tok\n")
	devicesFile := testkit.WriteFile(t, t.TempDir(), "devices.csv", "pk,d1,s1\n")
	tf := "--token-file=" + tokenFile
	for _, c := range []struct {
		name string
		args []string
		want error  // matched with ErrorIs when set
		text string // in the error or on stderr
	}{
		{"unknown flag", []string{"--no-such-flag"}, ErrUsage, "flag provided but not defined"},
		{"extra argument", []string{tf, "extra"}, ErrUsage, `unexpected argument "extra"`},
		{"bad duration", []string{"--duration", "soon"}, ErrUsage, "invalid value"},
		{"qos 2", []string{tf, "--qos", "2"}, ErrConfig, "qos 2"},
		{"no devices", []string{tf, "--devices", "0"}, ErrConfig, "devices 0"},
		{"payload", []string{tf, "--payload", "xml"}, ErrConfig, `profile "xml"`},
		{"mqtt addr", []string{tf, "--mqtt-addr", "localhost"}, ErrConfig, "host:port"},
		{"api url", []string{tf, "--api-url", "localhost:8080"}, ErrConfig, "api url"},
		{"cert without key", []string{tf, "--cert-file", "d.crt"}, ErrConfig, "needs its key"},
		{"missing CA file", []string{tf, "--ca-file", "/nonexistent/ca.crt"}, ErrConfig, "read CA file"},
		{"no duration", []string{tf, "--duration", "0"}, ErrConfig, "duration or a message count"},
		{"too fast per device", []string{tf, "--devices", "1", "--rate", "2000"}, ErrConfig, "per device"},
		{"step with count", []string{tf, "--step-search", "--count", "5"}, ErrConfig, "step search"},
		{"step factor", []string{tf, "--step-search", "--step-factor", "1"}, ErrConfig, "step factor"},
		{"replies at qos 0", []string{tf, "--replies", "--qos", "0"}, ErrConfig, "replies"},
		{"plain with devices file", []string{"--plain", "--devices-file", devicesFile}, ErrConfig, "devices file"},
		{"devices file too short", []string{tf, "--devices-file", devicesFile, "--devices", "2"}, ErrConfig, "lists 1"},
		{"bad slo", []string{tf, "--slo", "p99_x<1ms"}, ErrSLO, "unknown metric"},
		{"no token file", []string{"--token-file", filepath.Join(t.TempDir(), "none")}, nil, "--token-file"},
		{"log level", []string{tf, "--log-level", "loud"}, nil, "log-level"},
		{"nothing listening", []string{"--plain", "--mqtt-addr", "127.0.0.1:1", "--devices", "2", "--duration", "1s", "--quiet"}, nil, "no device could connect"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := Main(ctx, c.args, &out, &errb)
			require.Error(t, err)
			if c.want != nil {
				require.ErrorIs(t, err, c.want)
			}
			require.Contains(t, err.Error()+errb.String(), c.text)
		})
	}
}
