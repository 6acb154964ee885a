// Package bus moves records over Kafka through kafka-go, whose types stay
// inside it: the rest of Gale sees Message, the Producer interface with its
// synchronous and asynchronous producers (acks=all), and batching consumer
// groups that commit offsets only after their handler succeeded. With no
// brokers configured it serves Kafka in-process with kfake, persisted under
// the data dir.
package bus

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/gale-iot/gale/internal/config"
)

// Config configures the bus.
type Config struct {
	// Brokers of an external Kafka cluster; empty means the embedded broker.
	Brokers []string `yaml:"brokers"`
	// EmbeddedAddr is where the embedded broker listens.
	EmbeddedAddr string `yaml:"embeddedAddr"`
	// DataDir persists the embedded broker's log; empty keeps it in memory.
	DataDir string `yaml:"dataDir"`
	// SyncWrites fsyncs every produced batch of the embedded broker.
	SyncWrites bool `yaml:"syncWrites"`
	// Partitions of each topic Gale creates.
	Partitions int `yaml:"partitions"`
	// EmbeddedRetention is how long the embedded broker keeps the records
	// of its data topics (all but the registry's change log, which it
	// keeps); 0 keeps them forever.
	EmbeddedRetention time.Duration `yaml:"embeddedRetention"`
	// EmbeddedRetentionBytes bounds each partition of the embedded broker's
	// data topics, the oldest records going first; "none" sets no bound.
	EmbeddedRetentionBytes config.ByteSize `yaml:"embeddedRetentionBytes"`
	// BatchTimeout bounds how long a produced message waits for its batch
	// to fill (the linger, at most a second). The ingest producer's lanes
	// wait it only under load (see AsyncProducer).
	BatchTimeout time.Duration `yaml:"batchTimeout"`
	// BatchSize is the most messages in one produce request per partition.
	BatchSize int `yaml:"batchSize"`
	// FetchWait bounds how long a consumer waits to fill a batch before handling it.
	FetchWait time.Duration `yaml:"fetchWait"`
	// MaxBatch is the most messages a consumer hands over at once.
	MaxBatch int `yaml:"maxBatch"`
	// SessionTimeout is the consumer group session timeout: how soon a dead member's partitions move.
	SessionTimeout time.Duration `yaml:"sessionTimeout"`
	// SASL authenticates every connection of the node to Kafka (producer,
	// consumer groups, metadata and lag requests). With the embedded broker
	// it is also the one user that broker accepts.
	SASL SASLConfig `yaml:"sasl"`
	// TLS encrypts every connection of the node to Kafka (external brokers only).
	TLS TLSConfig `yaml:"tls"`

	// creds are SASL and TLS resolved from their files by LoadCredentials.
	creds *credentials
}

// SASLConfig authenticates to Kafka with SCRAM.
type SASLConfig struct {
	// Mechanism is SCRAM-SHA-256 or SCRAM-SHA-512 (the default when a
	// username is given); empty without a username means no SASL.
	Mechanism string `yaml:"mechanism"`
	// Username is the SCRAM user.
	Username string `yaml:"username"`
	// PasswordFile holds the user's password (surrounding whitespace is
	// trimmed). A password is never put in a config file nor logged.
	PasswordFile string `yaml:"passwordFile"`
}

// TLSConfig makes the connections to Kafka TLS. It is on when Enabled or
// when any of its files is set.
type TLSConfig struct {
	// Enabled turns TLS on with the system's roots when no CAFile is given.
	Enabled bool `yaml:"enabled"`
	// CAFile holds the PEM certificates that verify the brokers.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are the client's certificate and key (PEM), for brokers that ask for one.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string `yaml:"serverName"`
}

// Complete picks SCRAM-SHA-512 for a user given without a mechanism.
func (s *SASLConfig) Complete() {
	if s.Mechanism == "" && (s.Username != "" || s.PasswordFile != "") {
		s.Mechanism = ScramSHA512
	}
}

// On reports whether TLS is configured.
func (t TLSConfig) On() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != ""
}

// SASL mechanisms Gale speaks.
const (
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// Sentinel errors of the Kafka security settings, wrapped with ErrConfig.
var (
	ErrSASLMechanism  = errors.New("sasl.mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512")
	ErrSASLIncomplete = errors.New("sasl needs username and passwordFile")
	ErrTLSKeyPair     = errors.New("tls.certFile and tls.keyFile go together")
	ErrOpenEmbedded   = errors.New("the embedded Kafka listens beyond loopback without SASL")
)

// DefaultConfig returns the settings tuned for one machine: a few
// milliseconds of batching on both sides, since one MQTT connection's rate
// is bounded by the produce latency.
func DefaultConfig() Config {
	return Config{
		EmbeddedAddr: "127.0.0.1:9092",
		Partitions:   8,
		// A day of records: consumers (remote write included) that are
		// down for longer resume at the oldest record kept.
		EmbeddedRetention: 24 * time.Hour,
		// The disk, and kfake's in-memory index of ≈ 72 B a batch, stay
		// bounded under a load test's rates too.
		EmbeddedRetentionBytes: 1 << 30,
		BatchTimeout:           2 * time.Millisecond,
		BatchSize:              2000,
		FetchWait:              20 * time.Millisecond,
		MaxBatch:               5000,
		SessionTimeout:         10 * time.Second,
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid bus config")

// Validate checks c.
func (c Config) Validate() error {
	if err := CheckRetention(c.EmbeddedRetention); err != nil {
		return fmt.Errorf("%w: embeddedRetention: %w", ErrConfig, err)
	}
	if err := CheckRetentionBytes(c.EmbeddedRetentionBytes); err != nil {
		return fmt.Errorf("%w: embeddedRetentionBytes: %w", ErrConfig, err)
	}
	switch {
	case len(c.Brokers) == 0 && c.EmbeddedAddr == "":
		return fmt.Errorf("%w: neither brokers nor embeddedAddr set", ErrConfig)
	case c.Partitions < 1:
		return fmt.Errorf("%w: partitions must be at least 1", ErrConfig)
	case c.BatchTimeout <= 0 || c.FetchWait <= 0:
		return fmt.Errorf("%w: batchTimeout and fetchWait must be positive", ErrConfig)
	case c.BatchTimeout > maxBatchTimeout:
		return fmt.Errorf("%w: batchTimeout must be at most %s: every message waits it under load", ErrConfig, maxBatchTimeout)
	case c.BatchSize < 1 || c.MaxBatch < 1:
		return fmt.Errorf("%w: batchSize and maxBatch must be at least 1", ErrConfig)
	case c.SessionTimeout < 6*time.Second:
		return fmt.Errorf("%w: sessionTimeout must be at least 6s", ErrConfig)
	}
	return c.validateSecurity()
}

// maxBatchTimeout bounds the linger: under load every PUBACK waits it.
const maxBatchTimeout = time.Second

func (c Config) validateSecurity() error {
	s := c.SASL
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.PasswordFile != "" {
			return fmt.Errorf("%w: %w", ErrConfig, ErrSASLMechanism)
		}
	case ScramSHA256, ScramSHA512:
		if s.Username == "" || s.PasswordFile == "" {
			return fmt.Errorf("%w: %w", ErrConfig, ErrSASLIncomplete)
		}
	default:
		return fmt.Errorf("%w: %w, not %q", ErrConfig, ErrSASLMechanism, s.Mechanism)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("%w: %w", ErrConfig, ErrTLSKeyPair)
	}
	if len(c.Brokers) == 0 && s.Mechanism == "" && !Loopback(c.EmbeddedAddr) {
		return fmt.Errorf("%w: %w: embeddedAddr %q; keep it on 127.0.0.1 or configure kafka.sasl", ErrConfig, ErrOpenEmbedded, c.EmbeddedAddr)
	}
	return nil
}

// CheckRetention refuses a retention of the embedded broker other than 0
// (forever) or MinRetention and longer.
func CheckRetention(d time.Duration) error {
	if d < 0 || d > 0 && d < MinRetention {
		return fmt.Errorf("retention must be 0 (forever) or at least %s, not %s", MinRetention, d)
	}
	return nil
}

// CheckRetentionBytes refuses a size bound of the embedded broker's
// partitions other than none or one log file (16 MiB) and more.
func CheckRetentionBytes(b config.ByteSize) error {
	if b != config.NoLimit && b < segmentBytes {
		return fmt.Errorf("retention bytes must be none or at least %s, not %s", config.ByteSize(segmentBytes), b)
	}
	return nil
}

// Loopback reports whether addr (host:port) names a loopback host.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
