package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/bus"
)

func TestKafkaCommandRequiresSASL(t *testing.T) {
	dir := t.TempDir()
	pass := testkit.WriteFile(t, dir, "pass", "pw-0123456789\n")
	users := testkit.WriteFile(t, dir, "users", "gale:pw-0123456789\nbad line\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no auth flags", nil, "requires SASL"},
		{"user without password file", []string{"--sasl-user", "gale"}, "go together"},
		{"missing password file", []string{"--sasl-user", "gale", "--sasl-password-file", filepath.Join(dir, "none")}, "password-file"},
		{"bad users file", []string{"--users-file", users}, "want name:password"},
		{"users and insecure", []string{"--sasl-user", "gale", "--sasl-password-file", pass, "--insecure-no-auth"}, "contradicts"},
		{"cert without key", []string{"--insecure-no-auth", "--tls-cert", pass}, "go together"},
		{"bad certificate", []string{"--insecure-no-auth", "--tls-cert", pass, "--tls-key", pass}, "certificate"},
		{"retention below a minute", []string{"--insecure-no-auth", "--retention", "5s"}, "at least 1m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"kafka", "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0"}, tc.args...)
			var out bytes.Buffer
			err := run(context.Background(), args, &out, &out)
			require.ErrorContains(t, err, tc.want)
			require.NotEqual(t, 0, exitCode(err))
		})
	}
	up := [][]string{{"up", "--kafka-addr", "0.0.0.0:9092"}, {"up", "--kafka-addr", "0.0.0.0:9092", "--kafka-sasl-user", "gale"}}
	for _, args := range up {
		var out bytes.Buffer
		require.ErrorIs(t, run(context.Background(), args, &out, &out), bus.ErrConfig, "%v", args)
	}

	// With a user, it serves that user only; its data dir is the owner's only.
	data := filepath.Join(t.TempDir(), "kafka")
	ctx, cancel := context.WithCancel(context.Background())
	var out testkit.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"kafka", "--data-dir", data, "--addr", "127.0.0.1:0", "--sasl-user", "gale", "--sasl-password-file", pass}, &out, &out)
	}()
	addr := regexp.MustCompile(`up on \[(\S+)\]`)
	require.Eventually(t, func() bool { return addr.MatchString(out.String()) }, 20*time.Second, 20*time.Millisecond, "%s", out.String())
	broker := addr.FindStringSubmatch(out.String())[1]
	require.Contains(t, out.String(), "SASL SCRAM, 1 user(s)")
	cfg := bus.DefaultConfig()
	require.Error(t, bus.Reachable(ctx, []string{broker}, cfg, 2*time.Second), "an unauthenticated client is refused")
	cfg.SASL = bus.SASLConfig{Mechanism: bus.ScramSHA256, Username: "gale", PasswordFile: pass}
	require.NoError(t, bus.Reachable(ctx, []string{broker}, cfg, 5*time.Second))
	cancel()
	require.NoError(t, <-done)
	st, err := os.Stat(data)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
}
