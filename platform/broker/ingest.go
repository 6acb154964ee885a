package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/registry"
)

// OnPublish validates a device request and hands it to Kafka without
// waiting. It runs on the client's read goroutine before mochi would write
// the PUBACK: a request put on Kafka returns packets.ErrRejectPacket, so
// mochi writes no PUBACK (and keeps no inflight state or receive quota for
// it), and the connection's pipeline writes the PUBACK and the reply once
// Kafka acknowledged it (acks=all), in the order the PUBLISHes arrived. That
// keeps QoS 1 at-least-once end to end while one connection has up to
// Config.MaxInFlight requests on their way. A request answered at once (a
// refusal, a command reply, a sub-device operation) first waits for those
// before it, so no acknowledgement overtakes another. mochi has checked the
// topic against mayPublish before.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.session(cl)
	if s == nil || s.pipe.broken.Load() {
		return pk, packets.ErrRejectPacket
	}
	e, err := h.prepare(s, pk)
	var rej *rejection
	switch {
	case errors.As(err, &rej):
		s.pipe.settle()
		h.reject(s, pk.TopicName, rej.id, rej.code, rej.reason, rej.message)
		return pk, packets.CodeSuccessIgnore
	case e == nil: // answered by prepare
		return pk, packets.CodeSuccessIgnore
	}
	if !s.pipe.acquire() {
		return pk, packets.ErrRejectPacket
	}
	// The timeout is Kafka's: it runs from the hand-over, not from the wait for a place.
	e.deadline = time.Now().Add(h.cfg.ProduceTimeout)
	s.pipe.push(e)
	e.left = len(e.msgs)
	var ctx context.Context // bounds the wait for room on a full lane; its timer is made only then
	for i := range e.msgs {
		done := func(err error) {
			if e.kind != "event" {
				v := e.msgs[i].Value
				h.bufs.Put(&v)
			}
			if s.pipe.completeOne(e, err) {
				h.startDrain(s)
			}
		}
		if h.trySend != nil && h.trySend(e.msgs[i], done) {
			continue
		}
		if ctx == nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.Background(), h.cfg.ProduceTimeout)
			defer cancel()
		}
		h.producer.Send(ctx, e.msgs[i], done)
	}
	return pk, packets.ErrRejectPacket
}

// rejection is a refused request: the reply code, the counted reason and the message.
type rejection struct {
	id      string
	code    int
	reason  string
	message string
}

func (r *rejection) Error() string { return r.reason + ": " + r.message }

func refuse(id string, code int, reason, message string) error {
	return &rejection{id: id, code: code, reason: reason, message: message}
}

// prepare validates request pk of session s and encodes its Kafka message.
// It returns a *rejection for a refused request, and nil and no error for
// requests it answered itself (command replies and sub-device operations).
func (h *hook) prepare(s *session, pk packets.Packet) (*pending, error) {
	if pk.FixedHeader.Retain {
		// A retained message would be delivered again to every later
		// subscriber: devices publish requests, which are answered once.
		return nil, refuse("", api.CodeBadRequest, "retain", "retained messages are not accepted")
	}
	topic, err := api.ParseTopic(pk.TopicName)
	if err != nil {
		return nil, refuse("", api.CodeBadRequest, "bad_topic", err.Error())
	}
	if topic.Reply {
		if topic.Kind == api.KindServiceCall {
			s.pipe.settle()
			h.serviceReply(topic, pk.Payload)
		}
		return nil, nil
	}
	if len(pk.Payload) > h.cfg.MaxPayload {
		return nil, refuse("", api.CodeTooLarge, "too_large",
			fmt.Sprintf("payload of %d bytes is above the limit of %d", len(pk.Payload), h.cfg.MaxPayload))
	}
	if !h.admit(s) {
		return nil, refuse("", api.CodeRateLimited, "rate_limited",
			fmt.Sprintf("device is above its rate limit of %g messages/s", h.cfg.RateLimit))
	}
	var req api.Request
	var fast *batch
	switch {
	case isPost(topic.Kind):
		fast = decodeBatch(pk.Payload, &req, false)
	case topic.Kind == api.KindMeasurepointPostBatch:
		fast = decodeBatch(pk.Payload, &req, true)
	}
	if fast == nil {
		if err := json.Unmarshal(pk.Payload, &req); err != nil {
			return nil, refuse("", api.CodeBadRequest, "bad_json", "malformed JSON: "+err.Error())
		}
	}
	dev, ok := h.devices.Device(topic.ProductKey, topic.DeviceKey)
	if !ok || !dev.Enabled {
		return nil, refuse(req.ID, api.CodeUnauthorized, "unknown_device", "device is not registered or is disabled")
	}
	model, ok := h.devices.Model(dev.ProductKey)
	if !ok {
		return nil, refuse(req.ID, api.CodeInternal, "no_model", "product has no thing model")
	}

	start := time.Now()
	now := h.now()
	win := window{now: now.UnixMilli(), oldest: now.Add(-h.cfg.MaxSampleAge).UnixMilli(), newest: now.Add(h.cfg.MaxSampleFuture).UnixMilli()}
	e := &pending{
		packetID: pk.PacketID, qos: pk.FixedHeader.Qos, topic: pk.TopicName, id: req.ID,
		start: start,
	}
	key := []byte(dev.ProductKey + "/" + dev.DeviceKey)
	switch topic.Kind {
	case api.KindMeasurepointPost, api.KindMeasurepointResume, api.KindMeasurepointResumeBatch:
		rec := api.Record{
			Kind: api.RecordPost, Org: dev.Org, Product: dev.ProductKey, Device: dev.DeviceKey, Site: dev.Site,
			MessageID: req.ID, Received: win.now,
		}
		e.kind = "post"
		if topic.Kind != api.KindMeasurepointPost {
			rec.Kind, e.kind = api.RecordResume, "resume"
		}
		var code int
		var reason string
		var err error
		if fast != nil {
			rec.Samples = fast.samples[:0]
			code, reason, err = validateEntries(&rec, fast.entries, model, win)
		} else {
			code, reason, err = validateSamples(&rec, req.Params, model, win)
		}
		if err == nil {
			e.msgs = []bus.Message{h.telemetry(key, &rec)}
			e.samples = len(rec.Samples)
		}
		if fast != nil { // the record is encoded: its samples' room goes back with the batch
			fast.samples = rec.Samples
			releaseBatch(fast)
		}
		if err != nil {
			return nil, refuse(req.ID, code, reason, err.Error())
		}
	case api.KindMeasurepointPostBatch:
		msgs, n, err := h.postBatch(s, dev.Org, &req, fast, win)
		if err != nil {
			return nil, err
		}
		e.msgs, e.samples, e.kind = msgs, n, "post"
	case api.KindTopoAdd, api.KindSubLogin, api.KindSubLoginBatch, api.KindSubLogout:
		s.pipe.settle()
		h.subDevices(s, topic, pk.TopicName, req)
		return nil, nil
	case api.KindEventPost:
		ev, code, reason, err := validateEvent(dev, topic.Name, req.Params, model, win)
		if err != nil {
			return nil, refuse(req.ID, code, reason, err.Error())
		}
		e.msgs = []bus.Message{{Topic: api.TopicEvents, Key: key, Value: ev}}
		e.kind = "event"
	default:
		return nil, refuse(req.ID, api.CodeNotImplemented, "not_implemented", "this request is not served by this node")
	}
	return e, nil
}

// telemetry encodes rec for gale.telemetry in a pooled buffer, which goes
// back to the pool once Kafka is done with it.
func (h *hook) telemetry(key []byte, rec *api.Record) bus.Message {
	bp := h.bufs.Get().(*[]byte)
	return bus.Message{Topic: api.TopicTelemetry, Key: key, Value: api.AppendRecord((*bp)[:0], rec)}
}

// decodeBatchParams decodes the params of a post/batch that the single
// pass left (see decodeBatch) in a second pass.
func decodeBatchParams(req *api.Request) (*batch, error) {
	var entries []api.SubDeviceMeasurepoints
	raw := bytes.TrimSpace(req.Params)
	if len(raw) == 0 || raw[0] != '[' {
		return nil, refuse(req.ID, api.CodeBadRequest, "bad_json", "params must be an array of {productKey, deviceKey, measurepoints, time}")
	}
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, refuse(req.ID, api.CodeBadRequest, "bad_json", "params: "+err.Error())
	}
	if len(entries) == 0 {
		return nil, refuse(req.ID, api.CodeBadRequest, "no_points", "params is an empty array")
	}
	b := batches.Get().(*batch)
	for _, e := range entries {
		b.add(e.ProductKey, e.DeviceKey, e.Time, e.Measurepoints)
	}
	return b, nil
}

// postBatch validates the entries of a gateway's thing.measurepoint.post.batch
// and encodes one live record per entry, so that every consumer sees each
// sample exactly as if its device had posted it alone. Each entry passes
// the ACL of its device's own measurepoint/post topic (the gateway itself
// or a sub-device logged in through this session) and the same validation
// as a post, and must be of the gateway's org; one bad entry refuses the
// whole request, with nothing produced. Each record carries its own
// device's org. It returns the messages and their number of samples.
func (h *hook) postBatch(s *session, org string, req *api.Request, b *batch, win window) ([]bus.Message, int, error) {
	if b == nil {
		var err error
		if b, err = decodeBatchParams(req); err != nil {
			return nil, 0, err
		}
	}
	defer releaseBatch(b)
	entries := b.entries
	msgs := make([]bus.Message, 0, len(entries))
	fail := func(code int, reason, message string) ([]bus.Message, int, error) {
		for _, m := range msgs {
			v := m.Value
			h.bufs.Put(&v)
		}
		return nil, 0, refuse(req.ID, code, reason, message)
	}
	samples := 0
	for i := range entries {
		en := &entries[i]
		pk, dk := string(en.productKey), string(en.deviceKey)
		if pk == "" || dk == "" {
			return fail(api.CodeBadRequest, "bad_json", fmt.Sprintf("params[%d]: productKey and deviceKey are required", i))
		}
		if !h.mayPublish(s, api.MeasurepointPostTopic(pk, dk)) {
			return fail(api.CodeUnauthorized, "acl_publish",
				fmt.Sprintf("params[%d]: %s/%s is neither this gateway nor a sub-device logged in through it", i, cut(pk), cut(dk)))
		}
		dev, ok := h.devices.Device(pk, dk)
		if !ok || !dev.Enabled {
			return fail(api.CodeUnauthorized, "unknown_device", fmt.Sprintf("params[%d]: device is not registered or is disabled", i))
		}
		if dev.Org != org {
			return fail(api.CodeUnauthorized, "subdevice_org", fmt.Sprintf("params[%d]: device belongs to another org than this gateway", i))
		}
		model, ok := h.devices.Model(dev.ProductKey)
		if !ok {
			return fail(api.CodeInternal, "no_model", fmt.Sprintf("params[%d]: product has no thing model", i))
		}
		rec := api.Record{
			Kind: api.RecordPost, Org: dev.Org, Product: dev.ProductKey, Device: dev.DeviceKey, Site: dev.Site,
			MessageID: req.ID, Received: win.now, Samples: b.samples[:0],
		}
		code, reason, err := validatePost(&rec, &en.post, model, win)
		b.samples = rec.Samples // encoded below or refused: the next entry reuses the room
		if err != nil {
			return fail(code, reason, fmt.Sprintf("params[%d]: %v", i, err))
		}
		msgs = append(msgs, h.telemetry([]byte(dev.ProductKey+"/"+dev.DeviceKey), &rec))
		samples += len(rec.Samples)
	}
	return msgs, samples, nil
}

// drainIdle is how long a drain goroutine that wrote its session's
// acknowledgements waits to be handed another session before it ends
// (hook.drainIdle).
const drainIdle = 50 * time.Millisecond

// startDrain has a goroutine write s's ready acknowledgements: one that
// waits for work, if one does, else a new one. Under load that spares a
// goroutine's start, stack growth and exit per message (5 % of the node's
// CPU at 12,000 msgs/s, docs/benchmarks.md); a goroutine held up by a
// device that does not read only leaves the waiting ones, so the others are
// never stuck behind it.
func (h *hook) startDrain(s *session) {
	select {
	case h.drains <- s:
	default:
		go h.drainer(s)
	}
}

// drainer drains s, then each session it is handed, until none comes for h.drainIdle.
func (h *hook) drainer(s *session) {
	idle := time.NewTimer(h.drainIdle)
	defer idle.Stop()
	for {
		h.drain(s)
		idle.Reset(h.drainIdle)
		select {
		case s = <-h.drains:
		case <-idle.C:
			return
		}
	}
}

// drain writes the PUBACKs and replies of s's requests that Kafka answered,
// in arrival order, and gives back their places in the pipeline once they
// are written (a request answered at once waits for that in settle). While
// it holds the connection's writes (mochi's HoldWrites), the PUBACKs and the
// replies are queued and go out together in as few writes as the write
// buffer allows: one for a PUBACK and its reply, not two, and no writer
// goroutine per reply.
func (h *hook) drain(s *session) {
	for {
		ready := s.pipe.take()
		if len(ready) == 0 {
			return
		}
		held := s.client.HoldWrites()
		var stop error
		for _, e := range ready {
			if stop = h.finish(s, e, held); stop != nil {
				break
			}
		}
		if held {
			s.client.FlushWrites()
		}
		if stop != nil { // after the PUBACKs before it are written
			s.client.Stop(stop)
		}
		for range ready {
			s.pipe.release()
		}
	}
}

// finish acknowledges request e once Kafka answered it; with queue, the
// PUBACK is queued for the writer the caller holds. A failure gets an
// error PUBACK on MQTT 5; MQTT 3.1.1 has no negative PUBACK, so the
// connection must close without one (finish returns why) and the client
// sends the request again, and nothing after it is acknowledged.
func (h *hook) finish(s *session, e *pending, queue bool) (stop error) {
	if s.pipe.broken.Load() {
		return nil
	}
	cl := s.client
	if e.err != nil {
		h.m.rejects.WithLabelValues("bus_unavailable").Inc()
		h.log.Warn("kafka did not take a device message; withholding its PUBACK", "topic", e.topic, "err", e.err)
		h.reply(s, e.topic, e.id, api.CodeUnavailable, "the bus is unavailable; retry")
		if cl.Properties.ProtocolVersion == 5 {
			h.ack(cl, e, packets.ErrImplementationSpecificError, queue)
			return nil
		}
		s.pipe.broken.Store(true)
		s.pipe.cond.Broadcast() // a read loop waiting for a place gives up
		return fmt.Errorf("withhold puback: %w", e.err)
	}
	h.m.messages.WithLabelValues(e.kind).Inc()
	h.m.samples.Add(float64(e.samples))
	if e.qos > 0 {
		h.ack(cl, e, packets.CodeSuccess, queue)
		h.m.puback.Observe(time.Since(e.start).Seconds())
	}
	h.reply(s, e.topic, e.id, api.CodeOK, "")
	return nil
}

// ack writes the PUBACK (PUBREC for QoS 2) of e with code, as mochi's
// processPublish would have: QoS 2 stays in flight until the client's
// PUBREL. With queue, it is queued for the writer the caller holds (and
// written at once if the queue is full).
func (h *hook) ack(cl *mqtt.Client, e *pending, code packets.Code, queue bool) {
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID:    e.packetID,
		ReasonCode:  code.Code,
	}
	if code.Code >= packets.ErrUnspecifiedError.Code {
		ack.Properties.ReasonString = code.Reason
	}
	if e.qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
		if code.Code < packets.ErrUnspecifiedError.Code {
			cl.State.Inflight.DecreaseReceiveQuota()
			if cl.State.Inflight.Set(ack) {
				atomic.AddInt64(&h.server.Info.Inflight, 1)
			}
		}
	}
	if queue && cl.QueuePacket(ack) {
		return
	}
	if err := cl.WritePacket(ack); err != nil && !errors.Is(err, mqtt.ErrConnectionClosed) {
		h.log.Debug("puback not written", "topic", e.topic, "err", err)
	}
}

// serviceReply hands a device's answer to a command to the listener, off
// the read goroutine and with a timeout (it writes SQLite and Kafka). At
// most cap(h.replySlots) run at once; beyond that, the device's read loop waits.
func (h *hook) serviceReply(topic api.Topic, payload []byte) {
	h.replySlots <- struct{}{}
	go func() {
		defer func() { <-h.replySlots }()
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ProduceTimeout)
		defer cancel()
		h.listener.ServiceReply(ctx, topic.ProductKey, topic.DeviceKey, topic.Name, payload)
	}()
}

// admit applies the device's rate limit: a device a little over it is
// slowed down (TCP backpressure); one far over it is refused.
func (h *hook) admit(s *session) bool {
	r := s.limiter.Reserve()
	d := r.Delay()
	if d > h.cfg.MaxRateDelay {
		r.Cancel()
		return false
	}
	if d > 0 {
		time.Sleep(d)
	}
	return true
}

// window is the accepted range of sample and event times (Unix ms) and the receive time.
type window struct{ now, oldest, newest int64 }

func (w window) check(t int64) error {
	if t < w.oldest || t > w.newest {
		return fmt.Errorf("time %d is outside the accepted window [%d, %d]", t, w.oldest, w.newest)
	}
	return nil
}

// validateSamples validates measurepoint params (an object, or an array of
// objects for batches) against model and the time window into rec. It
// returns the reply code and counted reason of a refusal.
func validateSamples(rec *api.Record, raw json.RawMessage, model *registry.Model, win window) (int, string, error) {
	var batch []api.MeasurepointParams
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '[':
		if err := json.Unmarshal(raw, &batch); err != nil {
			return api.CodeBadRequest, "bad_json", fmt.Errorf("params: %w", err)
		}
	case len(raw) > 0 && raw[0] == '{':
		batch = make([]api.MeasurepointParams, 1)
		if err := json.Unmarshal(raw, &batch[0]); err != nil {
			return api.CodeBadRequest, "bad_json", fmt.Errorf("params: %w", err)
		}
	default:
		return api.CodeBadRequest, "bad_json", errors.New("params must be an object or an array of objects")
	}
	return validateBatch(rec, batch, model, win)
}

// isPost reports whether kind is a measurepoint post, resume or resume batch.
func isPost(kind api.Kind) bool {
	return kind == api.KindMeasurepointPost || kind == api.KindMeasurepointResume || kind == api.KindMeasurepointResumeBatch
}

// validateBatch validates measurepoint params of the two-pass decode
// against model and the time window into rec, as the entries of the
// single pass are (validateEntries).
func validateBatch(rec *api.Record, params []api.MeasurepointParams, model *registry.Model, win window) (int, string, error) {
	if len(params) == 0 {
		return api.CodeBadRequest, "no_points", errors.New("params is an empty array")
	}
	b := batches.Get().(*batch)
	defer releaseBatch(b)
	for _, p := range params {
		b.add("", "", p.Time, p.Measurepoints)
	}
	return validateEntries(rec, b.entries, model, win)
}

// pointSample validates the raw JSON value v of measurepoint id at time t
// against model. It returns the reply code and counted reason of a refusal.
func pointSample(id string, v []byte, t int64, model *registry.Model) (api.Sample, int, string, error) {
	s := api.Sample{Point: id, Time: t}
	if v = bytes.TrimSpace(v); len(v) > 0 && v[0] == '{' {
		var qv api.QualityValue
		if err := json.Unmarshal(v, &qv); err != nil {
			return s, api.CodeBadRequest, "bad_json", fmt.Errorf("measurepoint %s: %w", cut(id), err)
		}
		v = qv.Value
		if qv.Quality != nil {
			if *qv.Quality < 0 || *qv.Quality > 127 {
				return s, api.CodeInvalidValue, "bad_value", fmt.Errorf("measurepoint %s: quality %d outside 0..127", cut(id), *qv.Quality)
			}
			s.Quality, s.HasQuality = uint8(*qv.Quality), true
		}
	}
	val, err := model.Value(id, v)
	if err != nil {
		if errors.Is(err, registry.ErrUnknownPoint) {
			return s, api.CodeUnknownPoint, "unknown_point", err
		}
		return s, api.CodeInvalidValue, "bad_value", err
	}
	s.Value = val
	return s, 0, "", nil
}

// pointRefusal keeps the refusal of the failing measurepoint with the smallest id.
type pointRefusal struct {
	id     string
	code   int
	reason string
	err    error
}

func (r *pointRefusal) keep(id string, code int, reason string, err error) {
	if r.err == nil || id < r.id {
		*r = pointRefusal{id: id, code: code, reason: reason, err: err}
	}
}

// validateEvent validates the params of device event id against model and
// the time window (a missing time is the receive time) and encodes the
// event for gale.events. It returns the reply code and counted reason of a refusal.
func validateEvent(dev api.Device, id string, params json.RawMessage, model *registry.Model, win window) ([]byte, int, string, error) {
	var def *api.Event
	for i := range model.Product.Model.Events {
		if model.Product.Model.Events[i].ID == id {
			def = &model.Product.Model.Events[i]
		}
	}
	if def == nil {
		return nil, api.CodeInvalidValue, "bad_event", fmt.Errorf("event %q is not in the thing model of %s", cut(id), dev.ProductKey)
	}
	var p struct {
		Time  int64           `json:"time"`
		Value json.RawMessage `json:"value"`
	}
	if len(params) > 0 {
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, api.CodeBadRequest, "bad_json", fmt.Errorf("params: %w", err)
		}
	}
	if p.Time == 0 {
		p.Time = win.now
	}
	if err := win.check(p.Time); err != nil {
		return nil, api.CodeInvalidValue, "bad_time", fmt.Errorf("event %s: %w", id, err)
	}
	b, err := json.Marshal(api.DeviceEvent{
		Type: api.EventTypeDevice, Org: dev.Org, Product: dev.ProductKey, Device: dev.DeviceKey, Site: dev.Site,
		Event: id, Severity: def.Severity, Time: p.Time, Params: p.Value,
	})
	if err != nil {
		return nil, api.CodeBadRequest, "bad_json", fmt.Errorf("event %s: %w", id, err)
	}
	return b, 0, "", nil
}

// reject counts a refused request and answers it on the reply topic.
func (h *hook) reject(s *session, topic, id string, code int, reason, message string) {
	h.m.rejects.WithLabelValues(reason).Inc()
	h.reply(s, topic, id, code, message)
}

// reply answers a request on its _reply topic, if the device listens.
func (h *hook) reply(s *session, topic, id string, code int, message string) {
	h.replyData(s, topic, id, code, message, nil)
}

// replyData answers with data.
func (h *hook) replyData(s *session, topic, id string, code int, message string, data any) {
	if !s.subscribed.Load() {
		return
	}
	b, err := json.Marshal(api.Reply{ID: id, Code: code, Message: message, Data: data})
	if err == nil {
		err = h.server.Publish(api.ReplyTopic(topic), b, false, 1)
	}
	if err != nil {
		h.log.Warn("reply not sent", "topic", topic, "err", err)
	}
}
