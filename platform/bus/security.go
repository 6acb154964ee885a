package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// credentials are a Config's SASL mechanism and TLS settings, read from their files.
type credentials struct {
	mech sasl.Mechanism
	tls  *tls.Config
}

// LoadCredentials reads the SASL password and TLS files once, so that
// every producer and consumer built from c afterwards authenticates with
// them; a config whose files are unreadable fails here, at start.
// Without it, each producer or consumer reads them when it is built.
func (c *Config) LoadCredentials() error {
	cr, err := c.readCredentials()
	if err != nil {
		return err
	}
	c.creds = &cr
	return nil
}

// credentials returns c's credentials. When they cannot be read, the
// mechanism returned fails every connection with the reason, so nothing
// silently connects without them.
func (c Config) credentials() credentials {
	if c.creds != nil {
		return *c.creds
	}
	cr, err := c.readCredentials()
	if err != nil {
		return credentials{mech: failedMechanism{err}}
	}
	return cr
}

func (c Config) readCredentials() (credentials, error) {
	var cr credentials
	if s := c.SASL; s.Mechanism != "" {
		pass, err := ReadSecretFile(s.PasswordFile)
		if err != nil {
			return cr, fmt.Errorf("kafka sasl password: %w", err)
		}
		algo := scram.SHA256
		if s.Mechanism == ScramSHA512 {
			algo = scram.SHA512
		}
		if cr.mech, err = scram.Mechanism(algo, s.Username, pass); err != nil {
			return cr, fmt.Errorf("kafka sasl %s: %w", s.Mechanism, err)
		}
	}
	if c.TLS.On() {
		t, err := c.TLS.client()
		if err != nil {
			return cr, err
		}
		cr.tls = t
	}
	return cr, nil
}

// client builds the TLS client config from t's files.
func (t TLSConfig) client() (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls ca: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka tls ca %q: no PEM certificate in it", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// ReadSecretFile reads a password or key from path, trimmed of surrounding
// whitespace; an empty one is an error.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %q is empty", path)
	}
	return s, nil
}

// dialer returns a kafka-go dialer with c's SASL and TLS.
func (c Config) dialer(timeout time.Duration) *kafka.Dialer {
	cr := c.credentials()
	return &kafka.Dialer{Timeout: timeout, DualStack: true, SASLMechanism: cr.mech, TLS: cr.tls}
}

// transport returns a kafka-go transport with c's SASL and TLS.
func (c Config) transport() *kafka.Transport {
	cr := c.credentials()
	return &kafka.Transport{SASL: cr.mech, TLS: cr.tls}
}

// failedMechanism stands for SASL credentials that could not be read: every
// connection fails with the reason.
type failedMechanism struct{ err error }

func (failedMechanism) Name() string { return "SCRAM-SHA-512" }

func (m failedMechanism) Start(context.Context) (sasl.StateMachine, []byte, error) {
	return nil, nil, m.err
}

// ErrNoCredentials is returned for a SASL user without a name or password.
var ErrNoCredentials = errors.New("kafka user without password")
