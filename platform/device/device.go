// Package device is a small SDK for devices that speak Gale's EnOS-compatible
// MQTT protocol: signed login, measurepoint post and resume, event post,
// request/reply matching and service handlers. The twin fleet, the load
// generator and tests use it; real device code can too.
//
// Connect returns a plain connection that lives until it drops. Client is the
// managed device: it reconnects with backoff, logs its sub-devices in again,
// and queues what it could not deliver for replay through resume/batch.
package device

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gale-iot/gale/platform/api"
)

// Config describes one device connection.
type Config struct {
	// Broker is the MQTT address, host:port.
	Broker string
	// TLS, when set, connects over TLS with this config: RootCAs trusting
	// the broker's CA and, for mutual TLS, the device's certificate, whose
	// subject CN is "{productKey}/{deviceKey}". pki.ClientConfig.Load builds
	// one from PEM files.
	TLS        *tls.Config
	ProductKey string
	DeviceKey  string
	Secret     string
	// ClientID is the id part of the signed client id; default the device key.
	ClientID string
	// KeepAlive is the MQTT keep-alive; default 30s.
	KeepAlive time.Duration
	// Now is the clock used to sign the login; default time.Now.
	Now func() time.Time
	// OnService answers service invocations (thing/service/{id}); nil answers 501.
	OnService ServiceHandler
	// OnConnectionLost is called when the connection drops.
	OnConnectionLost func(error)

	// The fields below configure a managed Client; Connect ignores them.

	// SubDevices are added to this gateway's topology and logged in, signed
	// afresh, every time the Client connects.
	SubDevices []SubDevice
	// QueueSize bounds the Client's queue of undelivered samples and events
	// (default 1000); when it is full the oldest entry is dropped and counted.
	QueueSize int
	// BatchSize is the most samples the Client replays in one resume/batch
	// message (default 100).
	BatchSize int
	// AckTimeout is how long the Client waits for a PUBACK (or a login step)
	// before it queues the message for replay (default 10s). It is also the
	// connection's write timeout.
	AckTimeout time.Duration
	// MinBackoff and MaxBackoff bound the Client's reconnect delay (defaults
	// 500ms and 30s); the delay doubles after every failed attempt and every
	// connection that held less than MaxBackoff, with jitter.
	MinBackoff, MaxBackoff time.Duration
}

// SubDevice is a sub-device a gateway Client logs in.
type SubDevice struct {
	ProductKey, DeviceKey, Secret string
}

// defaults fills unset fields.
func (c *Config) defaults() {
	c.ClientID = cmp.Or(c.ClientID, c.DeviceKey)
	c.KeepAlive = cmp.Or(c.KeepAlive, 30*time.Second)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1000
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(30*time.Second, c.MinBackoff)
	}
}

// ServiceCall is a service invocation received by a device or, through a gateway, by one of its sub-devices.
type ServiceCall struct {
	ProductKey, DeviceKey string
	Service               string
	Params                json.RawMessage
}

// ServiceHandler runs a service call and returns its reply code, message and output.
type ServiceHandler func(call ServiceCall) (code int, message string, output any)

// Device is a connected device. It is safe for concurrent use.
type Device struct {
	cfg    Config
	client paho.Client
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[string]chan api.Reply // reply topic + "\x00" + id
	// onReply receives replies nobody waits for (those to asynchronous publishes); may be nil.
	onReply func(topic string, r api.Reply)
}

// ErrRefused is returned when the broker refuses the login.
var ErrRefused = errors.New("login refused")

// Connect logs the device in and subscribes to its replies and service calls.
// The login is signed at cfg.Now; the broker accepts a signature once, so
// two Connects of one device within the same millisecond (of cfg.Now) sign
// the same login and the second is refused (Client avoids that).
func Connect(ctx context.Context, cfg Config) (*Device, error) {
	cfg.defaults()
	return connect(ctx, cfg, nil)
}

// connect logs in with a login signed now; onReply (may be nil) receives unmatched replies.
func connect(ctx context.Context, cfg Config, onReply func(string, api.Reply)) (*Device, error) {
	d := &Device{cfg: cfg, pending: map[string]chan api.Reply{}, onReply: onReply}
	cred := api.Sign(cfg.ClientID, cfg.ProductKey, cfg.DeviceKey, cfg.Secret, cfg.Now().UnixMilli())
	scheme := "tcp://"
	if cfg.TLS != nil {
		scheme = "tls://"
	}
	opts := paho.NewClientOptions().
		AddBroker(scheme + cfg.Broker).SetTLSConfig(cfg.TLS).
		SetClientID(cred.ClientID).SetUsername(cred.Username).SetPassword(cred.Password).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(10 * time.Second).SetWriteTimeout(cfg.AckTimeout).SetOrderMatters(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			if cfg.OnConnectionLost != nil {
				cfg.OnConnectionLost(err)
			}
		})
	d.client = paho.NewClient(opts)
	if err := wait(ctx, d.client.Connect()); err != nil {
		if strings.Contains(err.Error(), "not Authorized") || strings.Contains(err.Error(), "bad user name or password") {
			return nil, fmt.Errorf("%w: %s/%s: %v", ErrRefused, cfg.ProductKey, cfg.DeviceKey, err)
		}
		return nil, fmt.Errorf("connect %s/%s to %s: %w", cfg.ProductKey, cfg.DeviceKey, cfg.Broker, err)
	}
	filters := map[string]byte{
		api.DevicePrefix(cfg.ProductKey, cfg.DeviceKey) + "#":  1,
		api.SessionPrefix(cfg.ProductKey, cfg.DeviceKey) + "#": 1,
	}
	if err := wait(ctx, d.client.SubscribeMultiple(filters, d.onMessage)); err != nil {
		d.client.Disconnect(0)
		return nil, fmt.Errorf("subscribe %s/%s: %w", cfg.ProductKey, cfg.DeviceKey, err)
	}
	return d, nil
}

func wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close disconnects.
func (d *Device) Close() { d.client.Disconnect(250) }

// Connected reports whether the connection is up.
func (d *Device) Connected() bool { return d.client.IsConnectionOpen() }

func (d *Device) onMessage(_ paho.Client, m paho.Message) {
	topic := m.Topic()
	if strings.HasSuffix(topic, "_reply") {
		var r api.Reply
		if json.Unmarshal(m.Payload(), &r) != nil {
			return
		}
		d.mu.Lock()
		ch := d.pending[topic+"\x00"+r.ID]
		delete(d.pending, topic+"\x00"+r.ID)
		d.mu.Unlock()
		switch {
		case ch != nil:
			ch <- r
		case d.onReply != nil:
			d.onReply(topic, r)
		}
		return
	}
	t, err := api.ParseTopic(topic)
	if err != nil || t.Kind != api.KindServiceCall {
		return
	}
	var req api.Request
	code, msg, out := api.CodeBadRequest, "malformed request", any(nil)
	if json.Unmarshal(m.Payload(), &req) == nil {
		if d.cfg.OnService == nil {
			code, msg = api.CodeNotImplemented, "device has no service handler"
		} else {
			code, msg, out = d.cfg.OnService(ServiceCall{ProductKey: t.ProductKey, DeviceKey: t.DeviceKey, Service: t.Name, Params: req.Params})
		}
	}
	b, _ := json.Marshal(api.Reply{ID: req.ID, Code: code, Message: msg, Data: out})
	d.client.Publish(api.ReplyTopic(topic), 1, false, b)
}

// NewID returns the next request id.
func (d *Device) NewID() string { return strconv.FormatUint(d.nextID.Add(1), 10) }

// Publish sends a request on topic at QoS qos and returns once the broker acknowledged it (QoS 1).
func (d *Device) Publish(ctx context.Context, topic string, qos byte, req api.Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	return d.PublishRaw(ctx, topic, qos, b)
}

// PublishRaw sends payload as is (tests use it for malformed input).
func (d *Device) PublishRaw(ctx context.Context, topic string, qos byte, payload []byte) error {
	if err := wait(ctx, d.client.Publish(topic, qos, false, payload)); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// Request publishes req on topic at QoS 1 and waits for its reply.
func (d *Device) Request(ctx context.Context, topic string, req api.Request) (api.Reply, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return api.Reply{}, fmt.Errorf("encode request: %w", err)
	}
	return d.RequestRaw(ctx, topic, req.ID, b)
}

// RequestRaw publishes payload on topic at QoS 1 and waits for the reply carrying id
// (the empty id for payloads the broker cannot parse).
func (d *Device) RequestRaw(ctx context.Context, topic, id string, payload []byte) (api.Reply, error) {
	key := api.ReplyTopic(topic) + "\x00" + id
	ch := make(chan api.Reply, 1)
	d.mu.Lock()
	d.pending[key] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, key)
		d.mu.Unlock()
	}()
	if err := d.PublishRaw(ctx, topic, 1, payload); err != nil {
		return api.Reply{}, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return api.Reply{}, fmt.Errorf("waiting for reply on %s: %w", api.ReplyTopic(topic), ctx.Err())
	}
}

// Call is a request sent by Start whose reply is still to be awaited with Wait.
type Call struct {
	d     *Device
	key   string
	topic string
	tok   paho.Token
	ch    chan api.Reply
}

// Start publishes req on topic at QoS 1 and returns without waiting for
// its PUBACK or reply, so that several requests are in flight on the
// connection at once. Requests started one after another by one goroutine
// go out on the wire in that order, and the broker acknowledges them in
// that order. Every Call must be waited for, or its reply slot stays.
func (d *Device) Start(topic string, req api.Request) (*Call, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	c := &Call{d: d, key: api.ReplyTopic(topic) + "\x00" + req.ID, topic: topic, ch: make(chan api.Reply, 1)}
	d.mu.Lock()
	d.pending[c.key] = c.ch
	d.mu.Unlock()
	c.tok = d.client.Publish(topic, 1, false, b)
	return c, nil
}

// Wait returns the reply of the request, once it was acknowledged.
func (c *Call) Wait(ctx context.Context) (api.Reply, error) {
	defer func() {
		c.d.mu.Lock()
		delete(c.d.pending, c.key)
		c.d.mu.Unlock()
	}()
	if err := wait(ctx, c.tok); err != nil {
		return api.Reply{}, fmt.Errorf("publish %s: %w", c.topic, err)
	}
	select {
	case r := <-c.ch:
		return r, nil
	case <-ctx.Done():
		return api.Reply{}, fmt.Errorf("waiting for reply on %s: %w", api.ReplyTopic(c.topic), ctx.Err())
	}
}

// MeasurepointRequest builds a thing.measurepoint.post (or resume) request.
func (d *Device) MeasurepointRequest(method string, t time.Time, points map[string]any) api.Request {
	params, _ := json.Marshal(map[string]any{"measurepoints": points, "time": t.UnixMilli()})
	return api.Request{ID: d.NewID(), Version: "1.0", Method: method, Params: params}
}

// Post sends points measured at t and returns once acknowledged (QoS 1).
func (d *Device) Post(ctx context.Context, t time.Time, points map[string]any) error {
	return d.PostFor(ctx, d.cfg.ProductKey, d.cfg.DeviceKey, t, points)
}

// PostFor sends points of device (pk, dk): this device, or a sub-device logged in through it.
func (d *Device) PostFor(ctx context.Context, pk, dk string, t time.Time, points map[string]any) error {
	return d.Publish(ctx, api.MeasurepointPostTopic(pk, dk), 1, d.MeasurepointRequest("thing.measurepoint.post", t, points))
}

// AddTopo adds sub-devices (signed with their secrets) to this gateway's topology.
func (d *Device) AddTopo(ctx context.Context, subs []api.SubDeviceAuth) error {
	params, _ := json.Marshal(subs)
	r, err := d.Request(ctx, api.TopoAddTopic(d.cfg.ProductKey, d.cfg.DeviceKey), api.Request{ID: d.NewID(), Version: "1.0", Method: "thing.topo.add", Params: params})
	if err == nil && r.Code != api.CodeOK {
		err = fmt.Errorf("topo add: code %d: %s", r.Code, r.Message)
	}
	return err
}

// LoginSubDevices logs sub-devices in through this gateway and subscribes to
// their topics, so their service calls reach OnService. It returns those that failed.
func (d *Device) LoginSubDevices(ctx context.Context, subs []api.SubDeviceAuth) ([]api.SubDeviceRef, error) {
	params, _ := json.Marshal(api.SubDeviceLoginBatch{SubDevices: subs})
	r, err := d.Request(ctx, api.SubLoginBatchTopic(d.cfg.ProductKey, d.cfg.DeviceKey), api.Request{ID: d.NewID(), Version: "1.0", Method: "combine.login.batch", Params: params})
	if err != nil {
		return nil, err
	}
	if r.Code != api.CodeOK {
		return nil, fmt.Errorf("sub-device login: code %d: %s", r.Code, r.Message)
	}
	var res api.SubDeviceLoginResult
	b, _ := json.Marshal(r.Data)
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("sub-device login reply: %w", err)
	}
	if len(res.Logged) > 0 {
		filters := map[string]byte{}
		for _, s := range res.Logged {
			filters[api.DevicePrefix(s.ProductKey, s.DeviceKey)+"#"] = 1
		}
		if err := wait(ctx, d.client.SubscribeMultiple(filters, d.onMessage)); err != nil {
			return res.Failed, fmt.Errorf("subscribe sub-device topics: %w", err)
		}
	}
	return res.Failed, nil
}

// PostTopic returns this device's measurepoint post topic.
func (d *Device) PostTopic() string {
	return api.MeasurepointPostTopic(d.cfg.ProductKey, d.cfg.DeviceKey)
}

// ResumeTopic returns this device's backfill topic.
func (d *Device) ResumeTopic() string {
	return api.MeasurepointResumeTopic(d.cfg.ProductKey, d.cfg.DeviceKey)
}
