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
	// LoginSkew is how far a login timestamp (of a connect or of a signed
	// sub-device) may be from the broker's clock; 0 accepts any. A signature is
	// accepted once within this window (with 0, for a day).
	LoginSkew time.Duration `yaml:"loginSkew"`
	// MaxSampleAge is how old a sample or event may be. In a node's config,
	// left out (or 0) it is the TSDB's out-of-order window, and it may not exceed it.
	MaxSampleAge time.Duration `yaml:"maxSampleAge"`
	// MaxSampleFuture is how far ahead of the broker's clock a sample or event may be.
	MaxSampleFuture time.Duration `yaml:"maxSampleFuture"`
	// ProduceTimeout bounds the wait for Kafka's acknowledgement.
	ProduceTimeout time.Duration `yaml:"produceTimeout"`
	// MaxInFlight is how many requests of one connection may wait for
	// Kafka's acknowledgement at once; beyond it, the connection's read
	// loop waits. It is also the Receive Maximum announced to MQTT 5 clients.
	MaxInFlight int `yaml:"maxInFlight"`

	// ConnectTimeout is how long a new TCP connection may take to send its
	// CONNECT packet before it is closed.
	ConnectTimeout time.Duration `yaml:"connectTimeout"`
	// MaxConnectPacket is the largest packet a client may announce before it
	// has logged in (its CONNECT), in bytes; the broker allocates nothing
	// bigger for an unauthenticated client.
	MaxConnectPacket int `yaml:"maxConnectPacket"`
	// MaxConnections caps the open TCP connections (logged in or not); 0 is no cap.
	MaxConnections int `yaml:"maxConnections"`
	// MaxConnectionsPerIP caps the open TCP connections from one remote address; 0 is no cap.
	MaxConnectionsPerIP int `yaml:"maxConnectionsPerIP"`
	// MaxClientID is the longest accepted MQTT client id in bytes.
	MaxClientID int `yaml:"maxClientID"`

	// ReadBufferSize is each connection's read buffer in bytes (mochi's
	// ClientNetReadBufferSize), lent from a pool only while bytes are
	// pending (third_party/README.md), so it costs an idle device nothing; a
	// packet larger than it is read past the buffer, not refused.
	ReadBufferSize int `yaml:"readBufferSize"`
	// WriteBufferSize is how many bytes of queued outbound packets are
	// gathered into one write (mochi's ClientNetWriteBufferSize); the buffer
	// exists only while packets queue, and a larger packet is written whole.
	WriteBufferSize int `yaml:"writeBufferSize"`
	// MaxPendingWrites is the most packets each connection's outbound queue
	// holds (mochi's MaximumClientWritesPending; the forked mochi grows the
	// queue as packets are queued and lets it go once empty): a reply or
	// service call to a device whose queue is full is dropped.
	MaxPendingWrites int `yaml:"maxPendingWrites"`
	// LoginBackoff refuses logins from addresses and for devices that failed too often.
	LoginBackoff Backoff `yaml:"loginBackoff"`
}

// Backoff is flapping detection for failed logins (after EMQX's): a remote
// address or a device that fails MaxFailures logins within Window is
// refused, without checking signatures, for BanTime; each further ban of
// the same address or device doubles the time, up to MaxBanTime.
type Backoff struct {
	// Window is the period failures are counted in.
	Window time.Duration `yaml:"window"`
	// MaxFailuresPerIP is how many failed logins from one address ban it; 0 disables.
	MaxFailuresPerIP int `yaml:"maxFailuresPerIP"`
	// MaxFailuresPerDevice is how many failed logins for one device ban it; 0 disables.
	MaxFailuresPerDevice int `yaml:"maxFailuresPerDevice"`
	// BanTime is the first ban's length.
	BanTime time.Duration `yaml:"banTime"`
	// MaxBanTime bounds the doubling ban time.
	MaxBanTime time.Duration `yaml:"maxBanTime"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Addr:                "127.0.0.1:1883",
		MaxPayload:          256 << 10,
		RateLimit:           1000,
		Burst:               2000,
		MaxRateDelay:        time.Second,
		LoginSkew:           15 * time.Minute,
		MaxSampleAge:        7 * 24 * time.Hour,
		MaxSampleFuture:     time.Hour,
		ProduceTimeout:      10 * time.Second,
		MaxInFlight:         32,
		ConnectTimeout:      10 * time.Second,
		MaxConnectPacket:    8 << 10,
		MaxConnections:      200_000,
		MaxConnectionsPerIP: 50_000,
		MaxClientID:         128,
		// mochi's buffers and Gale's queue, measured for idle devices in
		// docs/benchmarks.md (issue 13): a 512-byte read buffer and a
		// 64-packet queue save 3.6 KB a connection (of ~33 KiB), but cut a
		// busy connection's throughput by a third to a half and drop more
		// replies to a device that bursts requests; a fleet of quiet
		// devices may choose them.
		ReadBufferSize:   2048,
		WriteBufferSize:  2048,
		MaxPendingWrites: 256,
		LoginBackoff: Backoff{
			Window:               time.Minute,
			MaxFailuresPerIP:     100,
			MaxFailuresPerDevice: 10,
			BanTime:              30 * time.Second,
			MaxBanTime:           10 * time.Minute,
		},
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
	case c.LoginSkew < 0:
		return fmt.Errorf("%w: loginSkew must not be negative", ErrConfig)
	case c.MaxSampleAge <= 0 || c.MaxSampleFuture <= 0:
		return fmt.Errorf("%w: maxSampleAge and maxSampleFuture must be positive", ErrConfig)
	case c.ProduceTimeout <= 0:
		return fmt.Errorf("%w: produceTimeout must be positive", ErrConfig)
	case c.MaxInFlight < 1 || c.MaxInFlight > 65535:
		return fmt.Errorf("%w: maxInFlight must be between 1 and 65535", ErrConfig)
	case c.ConnectTimeout <= 0:
		return fmt.Errorf("%w: connectTimeout must be positive", ErrConfig)
	case c.MaxConnectPacket < 256 || c.MaxConnectPacket > 1<<20:
		return fmt.Errorf("%w: maxConnectPacket must be between 256 and 1048576 bytes", ErrConfig)
	case c.MaxConnections < 0 || c.MaxConnectionsPerIP < 0:
		return fmt.Errorf("%w: maxConnections and maxConnectionsPerIP must not be negative", ErrConfig)
	case c.MaxClientID < 23 || c.MaxClientID > 65535:
		return fmt.Errorf("%w: maxClientID must be between 23 (MQTT's minimum) and 65535", ErrConfig)
	case c.ReadBufferSize < 64 || c.ReadBufferSize > 1<<20 || c.WriteBufferSize < 64 || c.WriteBufferSize > 1<<20:
		return fmt.Errorf("%w: readBufferSize and writeBufferSize must be between 64 and 1048576 bytes", ErrConfig)
	case c.MaxPendingWrites < 1 || c.MaxPendingWrites > 1<<16:
		return fmt.Errorf("%w: maxPendingWrites must be between 1 and 65536", ErrConfig)
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("%w: tls: %w", ErrConfig, err)
	}
	return c.LoginBackoff.validate()
}

func (b Backoff) validate() error {
	switch {
	case b.MaxFailuresPerIP < 0 || b.MaxFailuresPerDevice < 0:
		return fmt.Errorf("%w: loginBackoff.maxFailuresPerIP and maxFailuresPerDevice must not be negative", ErrConfig)
	case b.MaxFailuresPerIP+b.MaxFailuresPerDevice == 0:
		return nil
	case b.Window <= 0 || b.BanTime <= 0:
		return fmt.Errorf("%w: loginBackoff.window and banTime must be positive", ErrConfig)
	case b.MaxBanTime < b.BanTime:
		return fmt.Errorf("%w: loginBackoff.maxBanTime must be at least banTime", ErrConfig)
	}
	return nil
}
