// Package broker is Gale's MQTT front door: a mochi server whose hooks
// authenticate EnOS-signed logins, confine each device to its own topics,
// validate measurepoints against the thing model and put them on Kafka
// before the QoS 1 PUBACK goes out.
package broker

import (
	"errors"
	"fmt"
	"time"

	"github.com/gale-iot/gale/platform/pki"
)

// Config configures the broker.
type Config struct {
	// Addr is the MQTT TCP listen address.
	Addr string `yaml:"addr"`
	// TLS, with a certificate, serves MQTT over TLS only (plaintext is refused
	// on Addr); with client authentication, a device certificate must name
	// the device that logs in (see package pki).
	TLS pki.ServerConfig `yaml:"tls"`
	// MaxPayload is the largest accepted request payload in bytes; larger ones get code 413.
	MaxPayload int `yaml:"maxPayload"`
	// RateLimit is each device's sustained messages per second; Burst the bucket size.
	RateLimit float64 `yaml:"rateLimit"`
	Burst     int     `yaml:"burst"`
	// MaxRateDelay is how long a device over its rate is slowed down before its messages are refused with 429.
	MaxRateDelay time.Duration `yaml:"maxRateDelay"`
	// LoginSkew is how far a login timestamp may be from the broker's clock; 0 accepts any.
	LoginSkew time.Duration `yaml:"loginSkew"`
	// MaxSampleAge is how old a sample may be (the TSDB's out-of-order window).
	MaxSampleAge time.Duration `yaml:"maxSampleAge"`
	// MaxSampleFuture is how far ahead of the broker's clock a sample may be.
	MaxSampleFuture time.Duration `yaml:"maxSampleFuture"`
	// ProduceTimeout bounds the wait for Kafka's acknowledgement.
	ProduceTimeout time.Duration `yaml:"produceTimeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:1883",
		MaxPayload:      256 << 10,
		RateLimit:       1000,
		Burst:           2000,
		MaxRateDelay:    time.Second,
		LoginSkew:       15 * time.Minute,
		MaxSampleAge:    7 * 24 * time.Hour,
		MaxSampleFuture: time.Hour,
		ProduceTimeout:  10 * time.Second,
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid broker config")

// Validate checks c.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("%w: addr is empty", ErrConfig)
	case c.MaxPayload < 1024:
		return fmt.Errorf("%w: maxPayload must be at least 1024", ErrConfig)
	case c.RateLimit <= 0 || c.Burst < 1:
		return fmt.Errorf("%w: rateLimit and burst must be positive", ErrConfig)
	case c.MaxSampleAge <= 0 || c.MaxSampleFuture <= 0:
		return fmt.Errorf("%w: maxSampleAge and maxSampleFuture must be positive", ErrConfig)
	case c.ProduceTimeout <= 0:
		return fmt.Errorf("%w: produceTimeout must be positive", ErrConfig)
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("%w: tls: %w", ErrConfig, err)
	}
	return nil
}
