package device

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gale-iot/gale/platform/api"
)

// Client is a managed device: Run keeps it connected, reconnecting with
// exponential backoff and jitter and a freshly signed login each time; after
// every connect it subscribes again and logs its sub-devices in again. The
// backoff starts over once a connection held for MaxBackoff.
//
// Posts never block on the network. A post goes out live at QoS 1; what
// cannot go out (disconnected) or is not acknowledged within AckTimeout is
// kept in a bounded queue, oldest dropped first, and replayed in order once
// connected: samples through measurepoint/resume/batch, several per message,
// events through their event post. New samples keep going live meanwhile.
// Delivery is at least once: a message whose PUBACK was lost is sent again.
//
// A Client is safe for concurrent use; it holds no goroutine of its own
// besides Run (and those of its paho connection).
type Client struct {
	cfg  Config
	log  *slog.Logger
	kick chan struct{} // the queue has entries to replay

	mu         sync.Mutex
	dev        *Device // nil while disconnected
	inflight   []flight
	queue      queue
	lastReject string

	sent, resumed, rejected, connects atomic.Uint64
	// lastStamp is the last signing time handed out (Unix ms), see stamp.
	lastStamp atomic.Int64
}

// flight is a live post awaiting its PUBACK.
type flight struct {
	e        entry
	tok      paho.Token
	deadline time.Time
}

// Stats are a Client's counters.
type Stats struct {
	// Connected is true while the connection is up.
	Connected bool
	// Connects counts successful logins.
	Connects uint64
	// Sent counts live posts the broker acknowledged.
	Sent uint64
	// Resumed counts queued samples and events delivered by replay.
	Resumed uint64
	// Queued is the number of samples and events waiting for replay.
	Queued int
	// Dropped counts queued entries dropped because the queue was full.
	Dropped uint64
	// Rejected counts replies with a code other than 200 (the broker took
	// the message but refused its content, e.g. a timestamp out of range).
	Rejected uint64
	// LastReject is the topic and message of the last rejection.
	LastReject string
}

// NewClient returns a managed client for cfg; call Run to connect it.
func NewClient(cfg Config, log *slog.Logger) *Client {
	cfg.defaults()
	return &Client{
		cfg: cfg, log: log.With("device", cfg.ProductKey+"/"+cfg.DeviceKey),
		kick:  make(chan struct{}, 1),
		queue: queue{max: cfg.QueueSize},
	}
}

// Run connects and keeps the client connected until ctx ends, then
// disconnects and returns nil. Whatever is still queued then is lost.
func (c *Client) Run(ctx context.Context) error {
	backoff := c.cfg.MinBackoff
	for {
		lost := make(chan struct{})
		dev, err := c.connect(ctx, lost)
		if err == nil {
			up := time.Now()
			c.serve(ctx, dev, lost)
			c.detach()
			dev.Close()
			// Only a connection that held starts the backoff over: one the
			// broker keeps dropping (overloaded) is retried ever more slowly.
			if time.Since(up) >= c.cfg.MaxBackoff {
				backoff = c.cfg.MinBackoff
			}
		} else if ctx.Err() == nil {
			c.log.Debug("connect failed", "err", err, "retry_in", backoff)
		}
		if ctx.Err() != nil {
			return nil
		}
		// Jittered, so a fleet that lost its broker does not come back in one wave.
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, c.cfg.MaxBackoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// connect logs in (signed now), subscribes, logs the sub-devices in and
// makes the connection the one posts go to. lost is closed when it drops.
func (c *Client) connect(ctx context.Context, lost chan struct{}) (*Device, error) {
	cfg := c.cfg
	var once sync.Once
	cfg.OnConnectionLost = func(err error) {
		once.Do(func() { close(lost) })
		c.log.Debug("connection lost", "err", err)
		if c.cfg.OnConnectionLost != nil {
			c.cfg.OnConnectionLost(err)
		}
	}
	cfg.Now = c.stamp
	ctx, cancel := context.WithTimeout(ctx, c.cfg.AckTimeout)
	defer cancel()
	dev, err := connect(ctx, cfg, c.onReply)
	if err != nil {
		return nil, err
	}
	if err := c.loginSubDevices(ctx, dev); err != nil {
		dev.Close()
		return nil, err
	}
	c.mu.Lock()
	c.dev = dev
	c.mu.Unlock()
	c.connects.Add(1)
	c.log.Debug("connected")
	return dev, nil
}

// stamp is the time a login is signed at: the configured clock, but at
// least a millisecond after the client's previous signature. The broker
// accepts each signature once, so two logins in the same millisecond must
// not sign the same timestamp.
func (c *Client) stamp() time.Time {
	for {
		last := c.lastStamp.Load()
		now := c.cfg.Now()
		ms := max(now.UnixMilli(), last+1)
		if c.lastStamp.CompareAndSwap(last, ms) {
			return time.UnixMilli(ms)
		}
	}
}

func (c *Client) loginSubDevices(ctx context.Context, dev *Device) error {
	if len(c.cfg.SubDevices) == 0 {
		return nil
	}
	ts := c.stamp().UnixMilli()
	subs := make([]api.SubDeviceAuth, len(c.cfg.SubDevices))
	for i, s := range c.cfg.SubDevices {
		subs[i] = api.SignSubDevice(s.ProductKey, s.DeviceKey, s.Secret, ts)
	}
	if err := dev.AddTopo(ctx, subs); err != nil {
		return err
	}
	failed, err := dev.LoginSubDevices(ctx, subs)
	if err != nil {
		return err
	}
	for _, f := range failed {
		c.log.Warn("sub-device login refused", "sub_device", f.ProductKey+"/"+f.DeviceKey, "message", f.Message)
	}
	return nil
}

// serve replays the queue and checks the posts in flight until the
// connection drops or ctx ends.
func (c *Client) serve(ctx context.Context, dev *Device, lost <-chan struct{}) {
	tick := time.NewTicker(c.cfg.AckTimeout)
	defer tick.Stop()
	for {
		c.replay(ctx, dev, lost)
		select {
		case <-ctx.Done():
			return
		case <-lost:
			return
		case <-c.kick:
		case now := <-tick.C:
			c.mu.Lock()
			c.reap(now)
			c.mu.Unlock()
		}
	}
}

// replay sends the queue's head, one message at a time, and removes what
// the broker acknowledged. It stops at the first failure or timeout; the
// next kick or tick tries again.
func (c *Client) replay(ctx context.Context, dev *Device, lost <-chan struct{}) {
	timer := time.NewTimer(c.cfg.AckTimeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		batch := c.queue.batch(c.cfg.BatchSize)
		if len(batch) == 0 {
			c.mu.Unlock()
			return
		}
		last := batch[len(batch)-1].seq
		topic, payload := resumeMessage(batch, dev.NewID())
		c.mu.Unlock()

		tok := dev.client.Publish(topic, 1, false, payload)
		timer.Reset(c.cfg.AckTimeout)
		select {
		case <-tok.Done():
			if tok.Error() != nil {
				return
			}
		case <-timer.C:
			return
		case <-lost:
			return
		case <-ctx.Done():
			return
		}
		c.mu.Lock()
		n := c.queue.popThrough(last)
		c.mu.Unlock()
		c.resumed.Add(uint64(n))
	}
}

// resumeMessage encodes the replay of batch: a resume/batch request for
// samples, the event post itself for an event.
func resumeMessage(batch []entry, id string) (topic string, payload []byte) {
	e := &batch[0]
	if e.event != "" {
		return e.liveTopic(), request(id, e.liveMethod(), e.params)
	}
	params := []byte{'['}
	for i := range batch {
		if i > 0 {
			params = append(params, ',')
		}
		params = append(params, batch[i].params...)
	}
	params = append(params, ']')
	return api.MeasurepointResumeBatchTopic(e.pk, e.dk), request(id, "thing.measurepoint.resume.batch", params)
}

// request encodes a request envelope around already encoded params.
func request(id, method string, params json.RawMessage) []byte {
	b, _ := json.Marshal(api.Request{ID: id, Version: "1.0", Method: method, Params: params}) // cannot fail: params are valid JSON
	return b
}

// Post sends the device's points measured at t; see PostFor.
func (c *Client) Post(t time.Time, points map[string]any) error {
	return c.PostFor(c.cfg.ProductKey, c.cfg.DeviceKey, t, points)
}

// PostFor sends points of device (pk, dk), this device or a sub-device,
// measured at t. It does not wait: the sample goes out live, or is queued
// for replay. It fails only when the points do not encode as JSON.
func (c *Client) PostFor(pk, dk string, t time.Time, points map[string]any) error {
	params, err := json.Marshal(struct {
		Measurepoints map[string]any `json:"measurepoints"`
		Time          int64          `json:"time"`
	}{points, t.UnixMilli()})
	if err != nil {
		return fmt.Errorf("encode measurepoints of %s/%s: %w", pk, dk, err)
	}
	c.send(entry{pk: pk, dk: dk, params: params})
	return nil
}

// PostEvent sends the device's event (a thing model event identifier) that
// happened at t with output value; see PostEventFor.
func (c *Client) PostEvent(event string, t time.Time, value any) error {
	return c.PostEventFor(c.cfg.ProductKey, c.cfg.DeviceKey, event, t, value)
}

// PostEventFor sends an event of device (pk, dk) on thing/event/{event}/post
// with params {"value": value, "time": t}. Like PostFor it does not wait.
func (c *Client) PostEventFor(pk, dk, event string, t time.Time, value any) error {
	params, err := json.Marshal(struct {
		Value any   `json:"value"`
		Time  int64 `json:"time"`
	}{value, t.UnixMilli()})
	if err != nil {
		return fmt.Errorf("encode event %s of %s/%s: %w", event, pk, dk, err)
	}
	c.send(entry{pk: pk, dk: dk, event: event, params: params})
	return nil
}

// send posts e live, or queues it while disconnected.
func (c *Client) send(e entry) {
	now := time.Now()
	c.mu.Lock()
	dev := c.dev
	if dev == nil {
		c.enqueue(e)
		c.mu.Unlock()
		return
	}
	c.reap(now)
	c.mu.Unlock()

	tok := dev.client.Publish(e.liveTopic(), 1, false, request(dev.NewID(), e.liveMethod(), e.params))

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dev != dev { // the connection dropped meanwhile and its flights were queued
		c.enqueue(e)
		return
	}
	c.inflight = append(c.inflight, flight{e: e, tok: tok, deadline: now.Add(c.cfg.AckTimeout)})
}

// enqueue queues e for replay; c.mu is held.
func (c *Client) enqueue(e entry) {
	c.queue.push(e)
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// reap forgets acknowledged posts and queues failed or overdue ones, in
// order; c.mu is held.
func (c *Client) reap(now time.Time) {
	keep := c.inflight[:0]
	for _, f := range c.inflight {
		if isDone(f.tok) {
			if f.tok.Error() == nil {
				c.sent.Add(1)
			} else {
				c.enqueue(f.e)
			}
			continue
		}
		if now.After(f.deadline) {
			c.enqueue(f.e)
			continue
		}
		keep = append(keep, f)
	}
	clear(c.inflight[len(keep):])
	c.inflight = keep
}

// detach marks the client disconnected and queues every post still in
// flight (a post acknowledged in the meantime is sent twice: at least once).
func (c *Client) detach() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dev = nil
	for _, f := range c.inflight {
		if isDone(f.tok) && f.tok.Error() == nil {
			c.sent.Add(1)
			continue
		}
		c.enqueue(f.e)
	}
	c.inflight = nil
}

func isDone(tok paho.Token) bool {
	select {
	case <-tok.Done():
		return true
	default:
		return false
	}
}

// onReply counts replies refusing a post.
func (c *Client) onReply(topic string, r api.Reply) {
	if r.Code == api.CodeOK {
		return
	}
	c.rejected.Add(1)
	msg := topic + ": " + strconv.Itoa(r.Code) + " " + r.Message
	c.mu.Lock()
	c.lastReject = msg
	c.mu.Unlock()
	c.log.Debug("post refused", "topic", topic, "code", r.Code, "message", r.Message)
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{
		Connected: c.dev != nil, Connects: c.connects.Load(),
		Sent: c.sent.Load(), Resumed: c.resumed.Load(),
		Queued: len(c.queue.items), Dropped: c.queue.dropped,
		Rejected: c.rejected.Load(), LastReject: c.lastReject,
	}
}
