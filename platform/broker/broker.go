package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gale-iot/gale/internal/logging"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/pki"
	"github.com/gale-iot/gale/platform/registry"
)

// Devices is the registry view the broker needs.
type Devices interface {
	Device(pk, dk string) (api.Device, bool)
	Model(pk string) (*registry.Model, bool)
	Topology
}

// Listener hears about device sessions and service replies (the command dispatcher).
type Listener interface {
	// DeviceOnline is called when a device (or the gateway of a logged-in
	// sub-device) subscribes to the device's service calls.
	DeviceOnline(pk, dk string)
	// ServiceReply is called with the payload a device sent on thing/service/{service}_reply.
	// It runs off the device's read goroutine; ctx carries its timeout.
	ServiceReply(ctx context.Context, pk, dk, service string, payload []byte)
}

type nopListener struct{}

func (nopListener) DeviceOnline(string, string)                                  {}
func (nopListener) ServiceReply(context.Context, string, string, string, []byte) {}

// Broker is the MQTT broker with Gale's hooks.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	server *mqtt.Server
	hook   *hook
	m      *metrics
	ln     net.Listener
}

// New returns a broker listening on cfg.Addr once Run is called.
func New(cfg Config, devices Devices, producer bus.Producer, log *slog.Logger, reg prometheus.Registerer) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	caps := mqtt.NewDefaultServerCapabilities()
	// Packets far above the payload limit are dropped by mochi; those just
	// above it still reach the hook, which answers them with code 413.
	caps.MaximumPacketSize = uint32(cfg.MaxPayload * 4)
	// Devices receive replies and service calls, not floods: a bounded
	// outbound queue (mochi's default is 8,192 packets). The forked mochi
	// allocates it only while packets are queued.
	caps.MaximumClientWritesPending = int32(cfg.MaxPendingWrites)
	// MQTT 5 clients keep no more QoS 1 publishes unacknowledged than the
	// broker's pipeline takes from one connection.
	caps.ReceiveMaximum = uint16(cfg.MaxInFlight)
	// Client input (payloads, long ids) stays out of the log.
	log = newQuietLogger(log)
	server := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		// With the forked mochi (third_party/README.md) a connection holds
		// its read buffer only while bytes are pending, and the write buffer
		// exists only while packets queue (docs/benchmarks.md, issue 13).
		ClientNetReadBufferSize:  cfg.ReadBufferSize,
		ClientNetWriteBufferSize: cfg.WriteBufferSize,
		InlineClient:             true,
		Logger:                   logging.Library(log.With("part", "mqtt")),
	})
	m := newMetrics(reg)
	h := newHook(cfg, server, devices, producer, log, m)
	if err := server.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("add broker hook: %w", err)
	}
	if cfg.TLS.ClientCAFile != "" {
		if err := server.AddHook(newCertHook(server, m.connectRejects, log), nil); err != nil {
			return nil, fmt.Errorf("add device certificate hook: %w", err)
		}
	}
	return &Broker{cfg: cfg, log: log, server: server, hook: h, m: m}, nil
}

// tlsHandshakeTimeout is how long a client has for its TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

// Listen binds the MQTT listener, so callers know the address before Run.
// With TLS configured, the listener speaks TLS only.
func (b *Broker) Listen() error {
	var tlsCfg *tls.Config
	if b.cfg.TLS.Enabled() {
		var err error
		if tlsCfg, err = b.cfg.TLS.Load(); err != nil {
			return fmt.Errorf("mqtt tls: %w", err)
		}
	}
	ln, err := net.Listen("tcp", b.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen mqtt on %s: %w", b.cfg.Addr, err)
	}
	if tlsCfg != nil {
		ln = pki.NewListener(ln, tlsCfg, tlsHandshakeTimeout)
	}
	b.ln = ln
	return nil
}

// Addr returns the bound listen address (after Listen).
func (b *Broker) Addr() string { return b.ln.Addr().String() }

// CloseListener releases the listener of a broker that Listened but never
// Ran (Run's end closes it otherwise).
func (b *Broker) CloseListener() error {
	if b.ln == nil {
		return nil
	}
	return b.ln.Close()
}

// Run serves MQTT until ctx is cancelled.
func (b *Broker) Run(ctx context.Context) error {
	if b.ln == nil {
		if err := b.Listen(); err != nil {
			return err
		}
	}
	ln := newGuardListener(b.ln, b.cfg, b.m, b.log)
	if err := b.server.AddListener(listeners.NewNet("mqtt", ln)); err != nil {
		return fmt.Errorf("add mqtt listener: %w", err)
	}
	if err := b.server.Serve(); err != nil {
		return fmt.Errorf("serve mqtt: %w", err)
	}
	b.log.Info("mqtt broker listening", "addr", b.Addr(), "tls", b.cfg.TLS.Enabled())
	<-ctx.Done()
	return b.server.Close()
}

// SetListener installs the listener; call before Run.
func (b *Broker) SetListener(l Listener) { b.hook.listener = l }

// Online reports whether device (pk, dk) has a session on this broker, directly or through its gateway.
func (b *Broker) Online(pk, dk string) bool { return b.hook.online(pk + "/" + dk) }

// DeviceChanged tells the broker that device (pk, dk) changed in the
// registry: a disabled or deleted device loses its session at once.
func (b *Broker) DeviceChanged(pk, dk string) { b.hook.DeviceChanged(pk, dk) }

// Publish sends a message from the platform to subscribers (e.g. a downlink command).
func (b *Broker) Publish(topic string, payload []byte, qos byte) error {
	return b.server.Publish(topic, payload, false, qos)
}
