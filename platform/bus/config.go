// Package bus moves records over Kafka through kafka-go: a synchronous
// producer (acks=all) and batching consumer groups that commit offsets only
// after their handler succeeded. With no brokers configured it serves Kafka
// in-process with kfake, persisted under the data dir.
package bus

import (
	"errors"
	"fmt"
	"time"
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
	// BatchTimeout bounds how long a produced message waits for its batch to fill.
	BatchTimeout time.Duration `yaml:"batchTimeout"`
	// BatchSize is the most messages in one produce request per partition.
	BatchSize int `yaml:"batchSize"`
	// FetchWait bounds how long a consumer waits to fill a batch before handling it.
	FetchWait time.Duration `yaml:"fetchWait"`
	// MaxBatch is the most messages a consumer hands over at once.
	MaxBatch int `yaml:"maxBatch"`
	// SessionTimeout is the consumer group session timeout: how soon a dead member's partitions move.
	SessionTimeout time.Duration `yaml:"sessionTimeout"`
}

// DefaultConfig returns the settings tuned for one machine: a few
// milliseconds of batching on both sides, since one MQTT connection's rate
// is bounded by the produce latency.
func DefaultConfig() Config {
	return Config{
		EmbeddedAddr:   "127.0.0.1:9092",
		Partitions:     8,
		BatchTimeout:   2 * time.Millisecond,
		BatchSize:      2000,
		FetchWait:      20 * time.Millisecond,
		MaxBatch:       5000,
		SessionTimeout: 10 * time.Second,
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid bus config")

// Validate checks c.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0 && c.EmbeddedAddr == "":
		return fmt.Errorf("%w: neither brokers nor embeddedAddr set", ErrConfig)
	case c.Partitions < 1:
		return fmt.Errorf("%w: partitions must be at least 1", ErrConfig)
	case c.BatchTimeout <= 0 || c.FetchWait <= 0:
		return fmt.Errorf("%w: batchTimeout and fetchWait must be positive", ErrConfig)
	case c.BatchSize < 1 || c.MaxBatch < 1:
		return fmt.Errorf("%w: batchSize and maxBatch must be at least 1", ErrConfig)
	case c.SessionTimeout < 6*time.Second:
		return fmt.Errorf("%w: sessionTimeout must be at least 6s", ErrConfig)
	}
	return nil
}
