package broker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/registry/registrytest"
)

// fakeProducer records what the broker puts on Kafka and acknowledges it at once.
type fakeProducer struct {
	mu   sync.Mutex
	msgs []bus.Message
}

func (p *fakeProducer) Send(_ context.Context, msg bus.Message, done func(error)) {
	p.mu.Lock()
	msg.Value = bytes.Clone(msg.Value) // the broker reuses the buffer once done ran
	p.msgs = append(p.msgs, msg)
	p.mu.Unlock()
	done(nil)
}

func (p *fakeProducer) Produce(ctx context.Context, msgs ...bus.Message) error {
	return bus.SendAll(ctx, p.Send, msgs...)
}

func (p *fakeProducer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

// rig is a broker on a loopback port with a real registry behind it.
type rig struct {
	b    *Broker
	reg  *registry.Registry
	prod *fakeProducer
	logs *testkit.SyncBuffer
	rec  *recorder
}

// recorder is the rig's Listener: it records service replies as "pk/dk/service payload".
type recorder struct{ replies chan string }

func (*recorder) DeviceOnline(string, string) {}

func (r *recorder) ServiceReply(_ context.Context, pk, dk, service string, payload []byte) {
	r.replies <- pk + "/" + dk + "/" + service + " " + string(payload)
}

// testProduct is the product of the rig's devices.
const testProduct = "sensor"

// testRegistry opens a registry with org "org" and the test product with model m.
func testRegistry(t testing.TB, m api.ThingModel) *registry.Registry {
	t.Helper()
	reg := registrytest.Open(t, "org")
	require.NoError(t, reg.PutProduct(context.Background(), api.Product{Key: testProduct, Model: m}, false))
	return reg
}

func startRig(t testing.TB, mutate func(*Config)) *rig {
	t.Helper()
	prod := &fakeProducer{}
	r := startRigWith(t, mutate, prod)
	r.prod = prod
	return r
}

// startRigWith is startRig with producer prod in front of Kafka.
func startRigWith(t testing.TB, mutate func(*Config), prod bus.Producer) *rig {
	t.Helper()
	reg := testRegistry(t, api.ThingModel{
		Measurepoints: []api.Measurepoint{{ID: "Temp", Type: api.TypeFloat}},
		Events:        []api.Event{{ID: "alarm", Severity: "major"}},
		Services:      []api.Service{{ID: "stop"}},
	})
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := New(cfg, reg, prod, log, prometheus.NewRegistry())
	require.NoError(t, err)
	reg.WatchDevices(b.DeviceChanged)
	rec := &recorder{replies: make(chan string, 100)}
	b.SetListener(rec)
	require.NoError(t, b.Listen())
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	// A probe connection, held until the broker counted it: then it serves.
	var probe net.Conn
	require.Eventually(t, func() bool {
		probe, err = net.Dial("tcp", b.Addr())
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return testutil.ToFloat64(b.m.connections) == 1 }, 5*time.Second, 5*time.Millisecond)
	probe.Close()
	require.Eventually(t, func() bool { return testutil.ToFloat64(b.m.connections) == 0 }, 5*time.Second, 5*time.Millisecond, "the probe is gone")
	return &rig{b: b, reg: reg, logs: logs, rec: rec}
}

// device registers an enabled device of the test product.
func (r *rig) device(t testing.TB, dk string) api.Device {
	t.Helper()
	d, err := r.reg.CreateDevice(context.Background(), api.Device{ProductKey: testProduct, DeviceKey: dk, Org: "org", Enabled: true})
	require.NoError(t, err)
	return d
}

// rejected is the count of refused connects (connect) or messages for reason.
func (r *rig) rejected(connect bool, reason string) float64 {
	if connect {
		return testutil.ToFloat64(r.b.m.connectRejects.WithLabelValues(reason))
	}
	return testutil.ToFloat64(r.b.m.rejects.WithLabelValues(reason))
}

// dial connects a paho client as d, signed now with client id part id
// (the device key when empty); opts adjusts the options.
func (r *rig) dial(t testing.TB, d api.Device, id string, opts func(*paho.ClientOptions)) (paho.Client, error) {
	t.Helper()
	if id == "" {
		id = d.DeviceKey
	}
	cred := api.Sign(id, d.ProductKey, d.DeviceKey, d.Secret, time.Now().UnixMilli())
	return r.dialCred(t, cred, opts)
}

func (r *rig) dialCred(t testing.TB, cred api.Credentials, opts func(*paho.ClientOptions)) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + r.b.Addr()).
		SetClientID(cred.ClientID).SetUsername(cred.Username).SetPassword(cred.Password).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second)
	if opts != nil {
		opts(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return c, context.DeadlineExceeded
	}
	if err := tok.Error(); err != nil {
		return c, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

// sdk connects d with the device SDK (answering service calls with
// onService when set) and returns a context for its requests.
func (r *rig) sdk(t testing.TB, d api.Device, onService device.ServiceHandler) (context.Context, *device.Device) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	dev, err := device.Connect(ctx, device.Config{Broker: r.b.Addr(), ProductKey: d.ProductKey, DeviceKey: d.DeviceKey, Secret: d.Secret, OnService: onService})
	require.NoError(t, err)
	t.Cleanup(dev.Close)
	return ctx, dev
}

// mustDial is dial that must succeed.
func (r *rig) mustDial(t testing.TB, d api.Device, opts func(*paho.ClientOptions)) paho.Client {
	t.Helper()
	c, err := r.dial(t, d, "", opts)
	require.NoError(t, err)
	return c
}

// subscribe subscribes c to filter and returns the channel of the payloads received.
func subscribe(t testing.TB, c paho.Client, filter string) <-chan []byte {
	t.Helper()
	ch := make(chan []byte, 100)
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { ch <- m.Payload() })
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	return ch
}

// publish publishes and waits for the PUBACK (or the connection's end).
func publish(c paho.Client, topic string, qos byte, retained bool, payload []byte) error {
	tok := c.Publish(topic, qos, retained, payload)
	tok.WaitTimeout(5 * time.Second)
	return tok.Error()
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }

func prometheusRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

func quietTestLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type (
	mqttClient   = mqtt.Client
	subscription = packets.Subscription
	packet       = packets.Packet
)

// byDeviceSession returns device (pk, dk)'s current session.
func (h *hook) byDeviceSession(pk, dk string) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byDevice[pk+"/"+dk]
}
