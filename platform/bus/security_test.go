package bus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// writeFile writes content to a 0600 file under t's temp dir.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// selfSigned returns a TLS server config for 127.0.0.1 and the PEM of its certificate.
func selfSigned(t testing.TB) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gale-kafka"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"gale-kafka"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestSecuredEmbeddedKafka(t *testing.T) {
	serverTLS, caPEM := selfSigned(t)
	ca := writeFile(t, "ca.pem", caPEM)
	good := writeFile(t, "pass", "s3cret-pass\n")
	bad := writeFile(t, "bad", "wrong")
	sasl := func(mech, file string) SASLConfig {
		return SASLConfig{Mechanism: mech, Username: "gale", PasswordFile: file}
	}
	for _, tc := range []struct {
		name      string
		serverTLS bool
		client    func(*Config)
		ok        bool
	}{
		{"scram-256", false, func(c *Config) { c.SASL = sasl(ScramSHA256, good) }, true},
		{"scram-512", false, func(c *Config) { c.SASL = sasl(ScramSHA512, good) }, true},
		{"scram-512 over tls", true, func(c *Config) { c.SASL, c.TLS = sasl(ScramSHA512, good), TLSConfig{CAFile: ca} }, true},
		{"no sasl", false, func(*Config) {}, false},
		{"wrong password", false, func(c *Config) { c.SASL = sasl(ScramSHA512, bad) }, false},
		{"missing password file", false, func(c *Config) { c.SASL = sasl(ScramSHA512, filepath.Join(t.TempDir(), "none")) }, false},
		{"plaintext to tls", true, func(c *Config) { c.SASL = sasl(ScramSHA512, good) }, false},
		{"tls with an unknown ca", true, func(c *Config) { c.SASL, c.TLS = sasl(ScramSHA512, good), TLSConfig{Enabled: true} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sec := Security{Users: []User{{Name: "gale", Password: "s3cret-pass"}}}
			if tc.serverTLS {
				sec.TLS = serverTLS
			}
			k, err := StartEmbeddedSecure("127.0.0.1:0", t.TempDir(), false, Log{Partitions: 1, Retained: []string{"t"}}, sec)
			require.NoError(t, err)
			t.Cleanup(k.Close)
			cfg := DefaultConfig()
			cfg.Brokers = k.Addrs()
			tc.client(&cfg)
			require.NoError(t, cfg.Validate())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = Reachable(ctx, k.Addrs(), cfg, 3*time.Second)
			if !tc.ok {
				require.Error(t, err)
				cfg.BatchTimeout = time.Millisecond
				p := NewSyncProducer(k.Addrs(), cfg)
				defer p.Close()
				short, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				require.Error(t, p.Produce(short, Message{Topic: "t", Value: []byte("x")}))
				return
			}
			require.NoError(t, err)
			p := NewSyncProducer(k.Addrs(), cfg)
			t.Cleanup(func() { require.NoError(t, p.Close()) })
			require.NoError(t, p.Produce(ctx, Message{Topic: "t", Value: []byte("hello")}))
			got := make(chan Message, 1)
			c := NewConsumer(k.Addrs(), "g", []string{"t"}, cfg, func(_ context.Context, batch []Message) error {
				got <- batch[0]
				return nil
			}, discardLog())
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- c.Run(runCtx) }()
			select {
			case m := <-got:
				require.Equal(t, Message{Topic: "t", Value: []byte("hello"), Offset: 0, HighWaterMark: 1}, m, "where it was read, and the partition's end")
			case <-ctx.Done():
				t.Fatal("no message consumed")
			}
			stop()
			require.NoError(t, <-done)
			// An outside reader logged in the same way sees the log.
			msgs, err := ReadTopic(ctx, k.Addrs(), cfg, "t")
			require.NoError(t, err)
			require.Len(t, msgs, 1)
			require.Equal(t, "hello", string(msgs[0].Value))
		})
	}
}

func TestSecurityConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want error
	}{
		{"defaults", func(*Config) {}, nil},
		{"unknown mechanism", func(c *Config) { c.SASL = SASLConfig{Mechanism: "PLAIN", Username: "u", PasswordFile: "f"} }, ErrSASLMechanism},
		{"user without mechanism", func(c *Config) { c.SASL.Username = "u" }, ErrSASLMechanism},
		{"no password file", func(c *Config) { c.SASL = SASLConfig{Mechanism: ScramSHA256, Username: "u"} }, ErrSASLIncomplete},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c.pem" }, ErrTLSKeyPair},
		{"open embedded beyond loopback", func(c *Config) { c.EmbeddedAddr = "0.0.0.0:9092" }, ErrOpenEmbedded},
		{"embedded beyond loopback with sasl", func(c *Config) {
			c.EmbeddedAddr = "0.0.0.0:9092"
			c.SASL = SASLConfig{Mechanism: ScramSHA512, Username: "u", PasswordFile: "f"}
		}, nil},
		{"external brokers", func(c *Config) { c.Brokers, c.EmbeddedAddr = []string{"kafka:9092"}, "0.0.0.0:9092" }, nil},
		{"localhost", func(c *Config) { c.EmbeddedAddr = "localhost:9092" }, nil},
		{"ipv6 loopback", func(c *Config) { c.EmbeddedAddr = "[::1]:9092" }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
			require.ErrorIs(t, err, ErrConfig)
		})
	}
}

func TestReadUsersFile(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          []User
	}{
		{"users", "# cluster\ngale:pw1\n\nops:p:w2\n", []User{{"gale", "pw1"}, {"ops", "p:w2"}}},
		{"no colon", "gale\n", nil},
		{"empty password", "gale:\n", nil},
		{"no user", "# nobody\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users, err := ReadUsersFile(writeFile(t, "users", tc.content))
			if tc.want == nil {
				require.ErrorIs(t, err, ErrNoCredentials)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, users)
		})
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestKcatLogsIn checks that librdkafka, the client under kcat and many
// others, logs in to the embedded broker with SCRAM, and is refused
// without a login or with a wrong password.
func TestKcatLogsIn(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed: apt-get install kcat")
	}
	k, err := StartEmbeddedSecure("127.0.0.1:0", "", false, Log{Partitions: 1, Retained: []string{"t"}}, Security{Users: []User{{Name: "gale", Password: "s3cret-pass"}}})
	require.NoError(t, err)
	t.Cleanup(k.Close)
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"scram-sha-512", []string{"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=gale", "-X", "sasl.password=s3cret-pass"}, true},
		{"scram-sha-256", []string{"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=gale", "-X", "sasl.password=s3cret-pass"}, true},
		{"wrong password", []string{"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=gale", "-X", "sasl.password=nope"}, false},
		{"no login", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-b", k.Addrs()[0], "-m", "5", "-L", "-t", "t"}, tc.args...)
			out, err := exec.Command(kcat, args...).CombinedOutput()
			if !tc.ok {
				require.Error(t, err, "%s", out)
				return
			}
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), `topic "t" with 1 partitions`)
		})
	}
}
