package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/gale-iot/gale/platform/api"
)

// device is one simulated device: its own MQTT connection and identity,
// its place in the timetable and its window of in-flight messages. The
// sender (run) and the acknowledgement collector (collect) are its two
// goroutines; the broker acknowledges one connection's messages in order,
// so collecting them in order loses no precision.
//
// It drives paho directly rather than through platform/device, whose Post
// waits for each acknowledgement and always subscribes to replies: a load
// generator needs async tokens, optional replies, TLS and anonymous logins.
type device struct {
	g       *Generator
	idx     int
	id      Identity
	topic   string
	payload *payload
	probe   int // index among the prober's devices, or -1

	client   paho.Client // touched by the sender goroutine only, once running
	lastDial time.Time
	seq      int64 // last sequence number sent
	lastTS   int64 // last timestamp sent, Unix ms
	// lostAt is when the connection was lost or given up on (Unix ns, 0
	// while connected): the start of an outage that reconnect measures.
	lostAt atomic.Int64
	// conn counts the connections made; a message remembers the one it went out on.
	conn atomic.Int64
	// firstDue and lastDue are the due times of the first and last message
	// (sender); lastAck is when the last PUBACK came (collect, read once it ended).
	firstDue, lastDue, lastAck time.Time

	window  chan struct{} // one token per message in flight
	pending chan inflight
	done    chan struct{} // closed when collect returns
}

// inflight is a published message awaiting its acknowledgement.
type inflight struct {
	seq, ts int64
	conn    int64 // the connection it went out on
	due     time.Time
	sent    time.Time
	tok     paho.Token
	recs    []*recorder
}

func newDevice(g *Generator, idx int, id Identity) *device {
	d := &device{
		g: g, idx: idx, id: id, probe: -1,
		topic:   api.MeasurepointPostTopic(id.ProductKey, id.DeviceKey),
		payload: newPayload(g.cfg, idx),
		window:  make(chan struct{}, g.cfg.MaxInflight),
		pending: make(chan inflight, g.cfg.MaxInflight),
		done:    make(chan struct{}),
	}
	go d.collect()
	return d
}

// connect logs the device in (signed, or anonymously in plain mode) and,
// with replies on, subscribes to its post replies.
func (d *device) connect(ctx context.Context) error {
	cfg := d.g.cfg
	d.lastDial = time.Now()
	opts := paho.NewClientOptions().AddBroker(d.g.brokerURL).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).
		SetKeepAlive(60 * time.Second).SetConnectTimeout(cfg.ConnectTimeout).SetWriteTimeout(cfg.PublishTimeout).
		SetOrderMatters(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			d.lostAt.CompareAndSwap(0, time.Now().UnixNano())
			d.g.rec.fail("connection_lost", time.Now(), false)
			d.g.log.Debug("connection lost", "device", d.id.Name(), "err", err)
		})
	if d.g.tls != nil {
		tlsCfg, err := d.g.deviceTLS(d.id)
		if err != nil {
			d.g.rec.fail("tls_config", time.Now(), false)
			return err
		}
		opts.SetTLSConfig(tlsCfg)
	}
	if cfg.Plain {
		opts.SetClientID(d.id.DeviceKey)
	} else {
		cred := api.Sign(d.id.DeviceKey, d.id.ProductKey, d.id.DeviceKey, d.id.Secret, time.Now().UnixMilli())
		opts.SetClientID(cred.ClientID).SetUsername(cred.Username).SetPassword(cred.Password)
	}
	c := paho.NewClient(opts)
	start := time.Now()
	err := waitToken(ctx, c.Connect(), start.Add(cfg.ConnectTimeout+time.Second))
	if err != nil {
		c.Disconnect(0)
		d.g.rec.fail(connectErrorKind(err), time.Now(), false)
		return fmt.Errorf("connect %s: %w", d.id.Name(), err)
	}
	d.g.rec.connect(time.Since(start))
	if cfg.Replies {
		tok := c.Subscribe(api.ReplyTopic(d.topic), 0, d.onReply)
		if err := waitToken(ctx, tok, time.Now().Add(cfg.ConnectTimeout)); err != nil {
			c.Disconnect(0)
			d.g.rec.fail("subscribe_error", time.Now(), false)
			return fmt.Errorf("subscribe %s to its replies: %w", d.id.Name(), err)
		}
	}
	d.client = c
	d.conn.Add(1)
	if lost := d.lostAt.Swap(0); lost != 0 {
		d.g.rec.observe(latReconnect, time.Since(time.Unix(0, lost)))
	}
	return nil
}

var errTimeout = errors.New("timed out")

// waitToken waits for tok until deadline or ctx ends.
func waitToken(ctx context.Context, tok paho.Token, deadline time.Time) error {
	select {
	case <-tok.Done():
		return tok.Error()
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return errTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connectErrorKind classifies a failed connect for the error counts.
func connectErrorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword),
		errors.Is(err, packets.ErrorRefusedIDRejected), errors.Is(err, packets.ErrorRefusedServerUnavailable),
		errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return "connect_rejected" // CONNACK with a refusal code
	case errors.Is(err, syscall.ECONNREFUSED), strings.Contains(err.Error(), "connection refused"):
		return "connect_refused" // nothing listening
	case errors.Is(err, errTimeout), errors.As(err, &ne) && ne.Timeout():
		return "connect_timeout"
	case errors.Is(err, context.Canceled):
		return "connect_cancelled"
	}
	return "connect_error"
}

// onReply counts error replies and marks their messages rejected.
func (d *device) onReply(_ paho.Client, m paho.Message) {
	var r api.Reply
	if json.Unmarshal(m.Payload(), &r) != nil || r.Code == api.CodeOK {
		return
	}
	d.g.rec.fail("reply_"+strconv.Itoa(r.Code), time.Now(), false)
	if seq, err := strconv.ParseInt(r.ID, 10, 64); err == nil && d.g.ledger != nil {
		d.g.ledger.mark(d.idx, seq, flagRejected)
	}
}

// connection returns the open client, redialling at most once a second
// when the connection dropped, never came up, or was given up on after a
// PUBACK timeout (as device SDKs do: a broker that stopped answering may
// still hold the TCP connection open); nil when down.
func (d *device) connection(ctx context.Context) paho.Client {
	if d.client != nil && d.client.IsConnectionOpen() && d.lostAt.Load() == 0 {
		return d.client
	}
	if d.client != nil {
		d.client.Disconnect(0)
		d.client = nil
	}
	if time.Since(d.lastDial) < time.Second {
		return nil
	}
	if err := d.connect(ctx); err != nil {
		d.g.log.Debug("reconnect failed", "device", d.id.Name(), "err", err)
		return nil
	}
	return d.client
}

// run publishes the device's messages of sched, shifted by shift from
// start, each at its due time however late the earlier ones were
// acknowledged; recs count them.
func (d *device) run(ctx context.Context, sched Schedule, start time.Time, shift time.Duration, recs []*recorder) {
	cfg := d.g.cfg
	for k := 0; ; k++ {
		if cfg.Count > 0 && d.seq >= int64(cfg.Count) {
			return
		}
		off, ok := sched.At(k)
		if !ok {
			return
		}
		due := start.Add(shift + off)
		if !sleepUntil(ctx, due) {
			return
		}
		for _, r := range recs {
			r.offer(due)
		}
		select {
		case d.window <- struct{}{}:
			d.g.inflight.Add(1)
		case <-ctx.Done():
			return
		}
		d.seq++
		if d.firstDue.IsZero() {
			d.firstDue = due
		}
		d.lastDue = due
		ts := max(due.UnixMilli(), d.lastTS+1) // distinct timestamps per device
		d.lastTS = ts
		if d.g.ledger != nil {
			d.g.ledger.add(d.idx, d.seq, ts)
		}
		if d.probe >= 0 {
			d.g.prober.expect(d.probe, ts, due)
		}
		c := d.connection(ctx)
		if c == nil {
			d.release()
			d.failed(recs, "not_connected", ts)
			continue
		}
		tok := c.Publish(d.topic, byte(cfg.QoS), false, d.payload.build(d.seq, ts))
		now := time.Now()
		for _, r := range recs {
			r.send(due, now)
		}
		d.pending <- inflight{seq: d.seq, ts: ts, conn: d.conn.Load(), due: due, sent: now, tok: tok, recs: recs}
	}
}

// failed counts a message that failed with kind.
func (d *device) failed(recs []*recorder, kind string, ts int64) {
	now := time.Now()
	for _, r := range recs {
		r.fail(kind, now, true)
	}
	if d.probe >= 0 {
		d.g.prober.fail(d.probe, ts)
	}
}

// collect waits for each in-flight message's acknowledgement, in order.
func (d *device) collect() {
	defer close(d.done)
	qos1 := d.g.cfg.QoS == 1
	for m := range d.pending {
		err := waitToken(context.Background(), m.tok, m.sent.Add(d.g.cfg.PublishTimeout))
		now := time.Now()
		d.release()
		switch {
		case errors.Is(err, errTimeout):
			if m.conn == d.conn.Load() { // not one the sender has given up on already
				d.lostAt.CompareAndSwap(0, now.UnixNano()) // the sender redials
			}
			d.failed(m.recs, "publish_timeout", m.ts)
		case err != nil:
			kind := "publish_error"
			if errors.Is(err, paho.ErrNotConnected) || strings.Contains(err.Error(), "connection lost") {
				kind = "publish_connection_lost"
			}
			d.failed(m.recs, kind, m.ts)
		default:
			for _, r := range m.recs {
				r.ack(m.due, now, qos1)
			}
			if !d.lastAck.IsZero() {
				d.g.rec.observe(latAckGap, now.Sub(d.lastAck))
			}
			d.lastAck = now
			if d.g.ledger != nil {
				d.g.ledger.mark(d.idx, m.seq, flagAcked)
			}
		}
	}
}

// release frees a message's place in the in-flight window.
func (d *device) release() {
	<-d.window
	d.g.inflight.Add(-1)
}

// close disconnects and stops the collector. An outage still going on is
// measured up to now (reconnect) and up to the last message due (ack_gap),
// so a device that never recovered shows in the maxima.
func (d *device) close() {
	if d.client != nil {
		d.client.Disconnect(100)
	}
	close(d.pending)
	<-d.done
	if lost := d.lostAt.Load(); lost != 0 {
		d.g.rec.observe(latReconnect, time.Since(time.Unix(0, lost)))
	}
	since := d.lastAck
	if since.IsZero() {
		since = d.firstDue
	}
	if d.lastDue.After(since) {
		d.g.rec.observe(latAckGap, d.lastDue.Sub(since))
	}
}

// sleepUntil waits until t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
