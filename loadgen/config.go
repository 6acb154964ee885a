// Package loadgen is Gale's load generator: many devices, each its own MQTT
// connection and signed identity, publish measurepoints on a fixed
// timetable (an open model: latency is measured from each message's
// scheduled time, so a slow broker shows as latency, never as a lower
// offered rate). It measures connect, PUBACK and publish-to-queryable
// latency in HDR histograms, checks through the query API that every
// acknowledged sample was stored (the loss ledger), and writes text, JSON
// and HTML reports that an SLO expression can fail. Against a plain MQTT
// broker it measures the broker alone, for comparison.
//
// It speaks to the platform only over MQTT and HTTP, like any device and
// any operator would.
package loadgen

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"time"
)

// Payload profiles.
const (
	// ProfileSynthetic sends short, cheap values (seq-derived).
	ProfileSynthetic = "synthetic"
	// ProfileTurbine sends values that move like a wind turbine's: wind,
	// power on a power curve, rotor speed, pitch, temperatures, direction,
	// grid frequency, with noise and several significant digits.
	ProfileTurbine = "turbine"
)

// SeqPoint is the measurepoint that carries each message's per-device
// sequence number; the loss ledger and the end-to-end probes read it back.
const SeqPoint = "Seq"

// Config describes one load run.
type Config struct {
	// MQTTAddr is the broker, host:port.
	MQTTAddr string
	// TLS connects over TLS (set by TLSCAFile or TLSCertFile too);
	// TLSCAFile trusts that CA (default: the system pool), also for an
	// https APIURL; TLSInsecure skips certificate verification.
	TLS         bool
	TLSCAFile   string
	TLSInsecure bool
	// TLSCertFile and TLSKeyFile are the devices' client certificate and key
	// for mutual TLS. Gale refuses a certificate that names another device
	// than the login, so with several devices give paths with {pk} and {dk}
	// placeholders (gale certs device writes DATA/tls/devices/{pk}_{dk}.crt).
	TLSCertFile, TLSKeyFile string

	// APIURL is Gale's HTTP API (registry and Prometheus-compatible queries).
	APIURL string
	// Token is the API bearer token.
	Token string
	// Plain runs against a plain MQTT broker: anonymous logins, no
	// registry, no end-to-end probes, no loss ledger.
	Plain bool
	// ComparePlain, when set, runs the same profile against this plain MQTT
	// broker (host:port) after the main run and reports the ratios.
	ComparePlain string

	// Devices is how many devices (connections) publish.
	Devices int
	// DevicesFile lists existing devices (CSV productKey,deviceKey,secret or
	// a JSON array of devices); the first Devices of them are used. Empty
	// creates Product's devices through the API.
	DevicesFile string
	// Identities, when set, are the devices to use (the first Devices of
	// them), already provisioned: neither DevicesFile nor the API is asked.
	Identities []Identity
	// DevicePrefix names created devices: PREFIX00000, PREFIX00001, ...
	DevicePrefix string
	// Product, Org and Site are created if missing (Product with points
	// P0..P{Points-1} and Seq).
	Product, Org, Site string
	// ConnectRate is connections opened per second.
	ConnectRate float64
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration

	// Rate is the total messages per second in the steady phase; when 0,
	// every device publishes once per Interval.
	Rate     float64
	Interval time.Duration
	// QoS is 0 or 1.
	QoS int
	// Points is how many P points each message carries (plus Seq).
	Points int
	// Profile is ProfileSynthetic or ProfileTurbine.
	Profile string
	// RampUp, Duration and RampDown are the phases of the timetable: the
	// rate rises linearly to Rate, holds, and falls linearly to zero.
	RampUp, Duration, RampDown time.Duration
	// Count stops each device after this many messages (0: no limit); with
	// Duration 0 the steady phase lasts until every device sent Count.
	Count int
	// StartJitter shifts each device's timetable by a random offset in
	// [0, StartJitter); 0 staggers the devices evenly over one interval.
	StartJitter time.Duration
	// MaxInflight is how many QoS 1 messages one connection may have
	// unacknowledged; a message due while the window is full waits, and its
	// wait counts in its latency.
	MaxInflight int
	// PublishTimeout is how long a message may wait for its PUBACK.
	PublishTimeout time.Duration
	// Replies subscribes to the post replies and counts error codes
	// (rejected messages are then not counted as lost).
	Replies bool
	// Seed seeds start jitter and payload noise.
	Seed int64

	// ProbeDevices is how many devices' messages are end-to-end probes.
	ProbeDevices int
	// ProbeInterval is how often the prober polls the query API: its
	// publish-to-queryable figures are at most this much above the truth.
	// At 50 ms the probe devices' sends and the polls fell into step, and
	// the p50 read 52 ms where the node took 13-21 ms (docs/benchmarks.md).
	ProbeInterval time.Duration
	// Ledger checks after the run that every acknowledged sample is stored.
	Ledger bool
	// SettleTimeout is how long the loss check waits for missing samples
	// while none of them shows up (and how long probes are waited for).
	SettleTimeout time.Duration

	// Step, when enabled, searches the maximum sustained rate.
	Step StepConfig

	// ProgressInterval is how often the live progress line is updated.
	ProgressInterval time.Duration
}

// StepConfig configures the step search: steps of StepDuration at Rate,
// Rate×Factor, ... until a step fails (PUBACK p99 above MaxP99, achieved
// below MinRatio of offered, or any error) or MaxSteps ran.
type StepConfig struct {
	Enabled  bool
	Factor   float64
	Duration time.Duration
	MaxP99   time.Duration
	MinRatio float64
	MaxSteps int
}

// DefaultConfig returns the defaults: 100 devices at 1 message/s each, QoS 1,
// 10 points, 60 s, against `gale up`'s default addresses.
func DefaultConfig() Config {
	return Config{
		MQTTAddr:       "127.0.0.1:1883",
		APIURL:         "http://127.0.0.1:8080",
		Devices:        100,
		DevicePrefix:   "lg-",
		Product:        "loadgen",
		Org:            "loadgen",
		Site:           "loadgen-site",
		ConnectRate:    200,
		ConnectTimeout: 10 * time.Second,
		Interval:       time.Second,
		QoS:            1,
		Points:         10,
		Profile:        ProfileSynthetic,
		Duration:       60 * time.Second,
		MaxInflight:    100,
		PublishTimeout: 10 * time.Second,
		Seed:           1,
		ProbeDevices:   4,
		ProbeInterval:  10 * time.Millisecond,
		Ledger:         true,
		SettleTimeout:  30 * time.Second,
		Step: StepConfig{
			Factor: 1.25, Duration: 20 * time.Second, MaxP99: 100 * time.Millisecond, MinRatio: 0.95, MaxSteps: 20,
		},
		ProgressInterval: time.Second,
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid load generator config")

// Validate checks c.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
	}
	if _, _, err := net.SplitHostPort(c.MQTTAddr); err != nil {
		return bad("mqtt address %q: want host:port", c.MQTTAddr)
	}
	if c.ComparePlain != "" {
		if _, _, err := net.SplitHostPort(c.ComparePlain); err != nil {
			return bad("plain broker address %q: want host:port", c.ComparePlain)
		}
	}
	if !c.Plain {
		if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("api url %q: want http(s)://host:port", c.APIURL)
		}
		if c.Token == "" {
			return bad("no API token")
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return bad("a TLS client certificate needs its key, and a key its certificate")
	}
	if c.DevicesFile != "" && c.Plain {
		return bad("a devices file needs signed logins; drop it in plain mode")
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"rate", c.Rate}, {"connect rate", c.ConnectRate}, {"step factor", c.Step.Factor}, {"step min ratio", c.Step.MinRatio}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) { // NaN passes every comparison below
			return bad("%s %g: want a finite number", f.name, f.v)
		}
	}
	switch {
	case c.Devices < 1 || c.Devices > 1_000_000:
		return bad("devices %d: want 1 to 1000000", c.Devices)
	case c.DevicesFile == "" && (c.DevicePrefix == "" || c.Product == "" || c.Site == "" || c.Org == ""):
		return bad("device prefix, product, org and site must not be empty")
	case c.ConnectRate <= 0:
		return bad("connect rate %g: want > 0", c.ConnectRate)
	case c.ConnectTimeout <= 0 || c.PublishTimeout <= 0:
		return bad("connect and publish timeouts must be positive")
	case c.Rate < 0:
		return bad("rate %g: want > 0", c.Rate)
	case c.Rate == 0 && c.Interval <= 0:
		return bad("set a rate or a per-device interval")
	case c.QoS != 0 && c.QoS != 1:
		return bad("qos %d: want 0 or 1", c.QoS)
	case c.Points < 0 || c.Points > 10_000:
		return bad("points %d: want 0 to 10000", c.Points)
	case c.Profile != ProfileSynthetic && c.Profile != ProfileTurbine:
		return bad("profile %q: want %s or %s", c.Profile, ProfileSynthetic, ProfileTurbine)
	case c.RampUp < 0 || c.Duration < 0 || c.RampDown < 0 || c.Count < 0 || c.StartJitter < 0:
		return bad("phases, count and start jitter must not be negative")
	case c.Duration == 0 && c.Count == 0 && !c.Step.Enabled:
		return bad("set a duration or a message count")
	case c.Duration == 0 && c.RampDown > 0:
		return bad("a ramp-down needs a duration")
	case c.MaxInflight < 1 || c.MaxInflight > 65535:
		return bad("max in-flight %d: want 1 to 65535", c.MaxInflight)
	case c.ProbeDevices < 0:
		return bad("probe devices %d: want >= 0", c.ProbeDevices)
	case c.ProbeInterval <= 0 || c.SettleTimeout <= 0 || c.ProgressInterval <= 0:
		return bad("probe interval, settle timeout and progress interval must be positive")
	case c.Replies && (c.QoS == 0 || c.Plain):
		return bad("replies need QoS 1 and a Gale broker")
	case c.Step.Enabled && c.Count > 0:
		return bad("a step search runs steps of a duration; drop the count")
	}
	if c.RatePerDevice() > 1000 {
		return bad("%.0f messages/s per device: above 1000 the ms timestamps of one device cannot stay distinct", c.RatePerDevice())
	}
	if s := c.Step; s.Enabled {
		switch {
		case s.Factor <= 1:
			return bad("step factor %g: want > 1", s.Factor)
		case s.Duration <= 0 || s.MaxP99 <= 0:
			return bad("step duration and step p99 bound must be positive")
		case s.MinRatio <= 0 || s.MinRatio > 1:
			return bad("step min ratio %g: want (0, 1]", s.MinRatio)
		case s.MaxSteps < 1:
			return bad("step max %d: want >= 1", s.MaxSteps)
		}
	}
	return nil
}

// RatePerDevice is each device's steady rate in messages per second.
func (c Config) RatePerDevice() float64 {
	if c.Rate > 0 {
		return c.Rate / float64(c.Devices)
	}
	return 1 / c.Interval.Seconds()
}

// TotalRate is the steady offered rate of all devices together.
func (c Config) TotalRate() float64 { return c.RatePerDevice() * float64(c.Devices) }
