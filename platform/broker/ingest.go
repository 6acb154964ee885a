package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/segmentio/kafka-go"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// OnPublish validates a device request, puts it on Kafka and replies. It runs
// on the client's read goroutine before mochi writes the PUBACK, so returning
// only after Kafka's acknowledgement makes QoS 1 at-least-once end to end.
// mochi has checked the topic against mayPublish before.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.session(cl)
	if s == nil {
		return pk, packets.ErrRejectPacket
	}
	if pk.FixedHeader.Retain {
		// A retained message would be delivered again to every later
		// subscriber: devices publish requests, which are answered once.
		h.reject(s, pk.TopicName, "", api.CodeBadRequest, "retain", "retained messages are not accepted")
		return pk, packets.CodeSuccessIgnore
	}
	topic, err := api.ParseTopic(pk.TopicName)
	if err != nil {
		h.reject(s, pk.TopicName, "", api.CodeBadRequest, "bad_topic", err.Error())
		return pk, packets.CodeSuccessIgnore
	}
	if topic.Reply {
		if topic.Kind == api.KindServiceCall {
			h.listener.ServiceReply(topic.ProductKey, topic.DeviceKey, topic.Name, pk.Payload)
		}
		return pk, packets.CodeSuccessIgnore
	}
	if len(pk.Payload) > h.cfg.MaxPayload {
		h.reject(s, pk.TopicName, "", api.CodeTooLarge, "too_large",
			fmt.Sprintf("payload of %d bytes is above the limit of %d", len(pk.Payload), h.cfg.MaxPayload))
		return pk, packets.CodeSuccessIgnore
	}
	if !h.admit(s) {
		h.reject(s, pk.TopicName, "", api.CodeRateLimited, "rate_limited",
			fmt.Sprintf("device is above its rate limit of %g messages/s", h.cfg.RateLimit))
		return pk, packets.CodeSuccessIgnore
	}
	var req api.Request
	if err := json.Unmarshal(pk.Payload, &req); err != nil {
		h.reject(s, pk.TopicName, "", api.CodeBadRequest, "bad_json", "malformed JSON: "+err.Error())
		return pk, packets.CodeSuccessIgnore
	}
	dev, ok := h.devices.Device(topic.ProductKey, topic.DeviceKey)
	if !ok || !dev.Enabled {
		h.reject(s, pk.TopicName, req.ID, api.CodeUnauthorized, "unknown_device", "device is not registered or is disabled")
		return pk, packets.CodeSuccessIgnore
	}
	model, ok := h.devices.Model(dev.ProductKey)
	if !ok {
		h.reject(s, pk.TopicName, req.ID, api.CodeInternal, "no_model", "product has no thing model")
		return pk, packets.CodeSuccessIgnore
	}

	start := time.Now()
	now := h.now()
	win := window{now: now.UnixMilli(), oldest: now.Add(-h.cfg.MaxSampleAge).UnixMilli(), newest: now.Add(h.cfg.MaxSampleFuture).UnixMilli()}
	var msg kafka.Message
	kind := ""
	switch topic.Kind {
	case api.KindMeasurepointPost, api.KindMeasurepointResume, api.KindMeasurepointResumeBatch:
		rec := api.Record{
			Kind: api.RecordPost, Org: dev.Org, Product: dev.ProductKey, Device: dev.DeviceKey, Site: dev.Site,
			MessageID: req.ID, Received: win.now,
		}
		kind = "post"
		if topic.Kind != api.KindMeasurepointPost {
			rec.Kind, kind = api.RecordResume, "resume"
		}
		if code, reason, err := validateSamples(&rec, req.Params, model, win); err != nil {
			h.reject(s, pk.TopicName, req.ID, code, reason, err.Error())
			return pk, packets.CodeSuccessIgnore
		}
		bp := h.bufs.Get().(*[]byte)
		defer h.bufs.Put(bp)
		*bp = api.AppendRecord((*bp)[:0], &rec)
		msg = kafka.Message{Topic: api.TopicTelemetry, Key: []byte(dev.ProductKey + "/" + dev.DeviceKey), Value: *bp}
		defer h.m.samples.Add(float64(len(rec.Samples)))
	case api.KindTopoAdd, api.KindSubLogin, api.KindSubLoginBatch, api.KindSubLogout:
		h.subDevices(s, topic, pk.TopicName, req)
		return pk, packets.CodeSuccessIgnore
	case api.KindEventPost:
		ev, code, reason, err := validateEvent(dev, topic.Name, req.Params, model, win)
		if err != nil {
			h.reject(s, pk.TopicName, req.ID, code, reason, err.Error())
			return pk, packets.CodeSuccessIgnore
		}
		msg = kafka.Message{Topic: api.TopicEvents, Key: []byte(dev.ProductKey + "/" + dev.DeviceKey), Value: ev}
		kind = "event"
	default:
		h.reject(s, pk.TopicName, req.ID, api.CodeNotImplemented, "not_implemented", "this request is not served by this node")
		return pk, packets.CodeSuccessIgnore
	}

	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ProduceTimeout)
	defer cancel()
	if err := h.producer.Produce(ctx, msg); err != nil {
		h.m.rejects.WithLabelValues("bus_unavailable").Inc()
		h.log.Warn("kafka did not take a device message; withholding its PUBACK", "topic", pk.TopicName, "err", err)
		h.reply(s, pk.TopicName, req.ID, api.CodeUnavailable, "the bus is unavailable; retry")
		if cl.Properties.ProtocolVersion == 5 {
			return pk, packets.ErrImplementationSpecificError
		}
		// MQTT 3.1.1 has no negative PUBACK: drop the connection so the client resends.
		cl.Stop(err)
		return pk, packets.ErrRejectPacket
	}
	h.m.messages.WithLabelValues(kind).Inc()
	if pk.FixedHeader.Qos > 0 {
		h.m.puback.Observe(time.Since(start).Seconds())
	}
	h.reply(s, pk.TopicName, req.ID, api.CodeOK, "")
	return pk, packets.CodeSuccessIgnore
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
	if len(batch) == 0 {
		return api.CodeBadRequest, "no_points", errors.New("params is an empty array")
	}
	for _, p := range batch {
		if len(p.Measurepoints) == 0 {
			return api.CodeBadRequest, "no_points", errors.New("params.measurepoints is empty")
		}
		t := p.Time
		if t == 0 {
			t = rec.Received
		}
		if err := win.check(t); err != nil {
			return api.CodeInvalidValue, "bad_time", err
		}
		for id, v := range p.Measurepoints {
			s := api.Sample{Point: id, Time: t}
			if v = bytes.TrimSpace(v); len(v) > 0 && v[0] == '{' {
				var qv api.QualityValue
				if err := json.Unmarshal(v, &qv); err != nil {
					return api.CodeBadRequest, "bad_json", fmt.Errorf("measurepoint %s: %w", cut(id), err)
				}
				v = qv.Value
				if qv.Quality != nil {
					if *qv.Quality < 0 || *qv.Quality > 127 {
						return api.CodeInvalidValue, "bad_value", fmt.Errorf("measurepoint %s: quality %d outside 0..127", cut(id), *qv.Quality)
					}
					s.Quality, s.HasQuality = uint8(*qv.Quality), true
				}
			}
			val, err := model.Value(id, v)
			if err != nil {
				if errors.Is(err, registry.ErrUnknownPoint) {
					return api.CodeUnknownPoint, "unknown_point", err
				}
				return api.CodeInvalidValue, "bad_value", err
			}
			s.Value = val
			rec.Samples = append(rec.Samples, s)
		}
	}
	return 0, "", nil
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
