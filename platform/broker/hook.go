package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/segmentio/kafka-go"
	"golang.org/x/time/rate"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// hook implements authentication, ACL and ingest on mochi's hook points.
type hook struct {
	mqtt.HookBase
	cfg      Config
	server   *mqtt.Server
	devices  Devices
	producer Producer
	log      *slog.Logger
	m        *metrics
	now      func() time.Time

	listener Listener

	mu       sync.Mutex
	sessions map[*mqtt.Client]*session
	byDevice map[string]*session // "pk/dk" → the device's current session
	subOwner map[string]*session // "pk/dk" of a logged-in sub-device → its gateway's session
	bufs     sync.Pool
}

// session is an authenticated device connection.
type session struct {
	client  *mqtt.Client
	pk, dk  string
	limiter *rate.Limiter
	// subs are the sub-devices logged in through this gateway session ("pk/dk"), guarded by hook.mu.
	subs map[string]bool
	// subscribed is set once the device subscribed to anything: a device
	// that never subscribed cannot receive replies, so none are published.
	subscribed atomic.Bool
}

func newHook(cfg Config, server *mqtt.Server, devices Devices, producer Producer, log *slog.Logger, m *metrics) *hook {
	return &hook{
		cfg: cfg, server: server, devices: devices, producer: producer, log: log, m: m, now: time.Now,
		sessions: map[*mqtt.Client]*session{},
		byDevice: map[string]*session{},
		subOwner: map[string]*session{},
		listener: nopListener{},
		bufs:     sync.Pool{New: func() any { return new([]byte) }},
	}
}

// ID names the hook.
func (h *hook) ID() string { return "gale" }

// Provides lists the hook points used.
func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed,
	}, []byte{b})
}

// OnConnectAuthenticate checks the EnOS signature of a device login.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	reason, err := h.authenticate(cl, pk)
	if err != nil {
		h.m.connectRejects.WithLabelValues(reason).Inc()
		h.log.Info("connect refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", reason, "err", err)
		return false
	}
	return true
}

func (h *hook) authenticate(cl *mqtt.Client, pk packets.Packet) (string, error) {
	login, err := api.ParseLogin(pk.Connect.ClientIdentifier, string(pk.Connect.Username))
	if err != nil {
		return "malformed", err
	}
	dev, ok := h.devices.Device(login.ProductKey, login.DeviceKey)
	switch {
	case !ok:
		return "unknown_device", fmt.Errorf("device %s/%s is not registered", login.ProductKey, login.DeviceKey)
	case !dev.Enabled:
		return "disabled", fmt.Errorf("device %s/%s is disabled", login.ProductKey, login.DeviceKey)
	case !login.Verify(string(pk.Connect.Password), dev.Secret):
		return "bad_signature", errors.New("signature does not match")
	}
	if h.cfg.LoginSkew > 0 {
		if skew := h.now().Sub(time.UnixMilli(login.Timestamp)).Abs(); skew > h.cfg.LoginSkew {
			return "stale_timestamp", fmt.Errorf("login timestamp is %s from the broker's clock, more than %s", skew.Round(time.Second), h.cfg.LoginSkew)
		}
	}
	h.mu.Lock()
	h.sessions[cl] = &session{
		client: cl, pk: login.ProductKey, dk: login.DeviceKey, subs: map[string]bool{},
		limiter: rate.NewLimiter(rate.Limit(h.cfg.RateLimit), h.cfg.Burst),
	}
	h.mu.Unlock()
	return "", nil
}

// OnSessionEstablished makes the new connection the device's only one, disconnecting an older one.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	s := h.sessions[cl]
	if s == nil {
		h.mu.Unlock()
		return
	}
	key := s.pk + "/" + s.dk
	old := h.byDevice[key]
	h.byDevice[key] = s
	h.mu.Unlock()
	h.m.connects.Inc()
	h.m.sessions.Inc()
	if old != nil && old.client != cl {
		h.log.Info("device logged in again; closing its older connection", "device", key)
		_ = h.server.DisconnectClient(old.client, packets.ErrSessionTakenOver)
	}
}

// OnDisconnect forgets the connection's session.
func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[cl]
	if s == nil {
		return
	}
	delete(h.sessions, cl)
	if key := s.pk + "/" + s.dk; h.byDevice[key] == s {
		delete(h.byDevice, key)
		h.m.sessions.Dec()
	}
	for sub := range s.subs {
		if h.subOwner[sub] == s {
			delete(h.subOwner, sub)
		}
	}
}

// online reports whether device "pk/dk" has a session here, directly or through its gateway.
func (h *hook) online(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byDevice[key] != nil || h.subOwner[key] != nil
}

// OnSubscribed notes that the device can now receive replies, and tells the
// listener which devices now receive their service calls (so queued commands
// are sent only once someone listens).
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	s := h.session(cl)
	if s == nil {
		return
	}
	s.subscribed.Store(true)
	devices := [][2]string{{s.pk, s.dk}}
	h.mu.Lock()
	for sub := range s.subs {
		pk, dk, _ := strings.Cut(sub, "/")
		devices = append(devices, [2]string{pk, dk})
	}
	h.mu.Unlock()
	for _, d := range devices {
		for _, f := range pk.Filters {
			if topicMatch(f.Filter, api.ServiceTopic(d[0], d[1], "x")) {
				h.listener.DeviceOnline(d[0], d[1])
				break
			}
		}
	}
}

// topicMatch reports whether MQTT filter (with + and #) matches topic.
func topicMatch(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) || f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}

func (h *hook) session(cl *mqtt.Client) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[cl]
}

// OnACLCheck lets a device publish and subscribe only under its own
// /sys/{pk}/{dk}/ (and, for a gateway, its session and its logged-in sub-devices).
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := h.session(cl)
	if s == nil {
		return false
	}
	if h.allowed(s, topic) {
		return true
	}
	reason := "acl_subscribe"
	if write {
		reason = "acl_publish"
	}
	h.m.rejects.WithLabelValues(reason).Inc()
	h.log.Info("acl refused", "device", s.pk+"/"+s.dk, "topic", topic, "write", write)
	return false
}

// OnPublish validates a device request, puts it on Kafka and replies. It runs
// on the client's read goroutine before mochi writes the PUBACK, so returning
// only after Kafka's acknowledgement makes QoS 1 at-least-once end to end.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.session(cl)
	if s == nil {
		return pk, packets.ErrRejectPacket
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
	var msg kafka.Message
	kind := ""
	switch topic.Kind {
	case api.KindMeasurepointPost, api.KindMeasurepointResume, api.KindMeasurepointResumeBatch:
		rec := api.Record{
			Kind: api.RecordPost, Org: dev.Org, Product: dev.ProductKey, Device: dev.DeviceKey, Site: dev.Site,
			MessageID: req.ID, Received: h.now().UnixMilli(),
		}
		kind = "post"
		if topic.Kind != api.KindMeasurepointPost {
			rec.Kind, kind = api.RecordResume, "resume"
		}
		if code, reason, err := h.samples(&rec, req.Params, model); err != nil {
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
		ev, err := h.event(dev, topic.Name, req, model)
		if err != nil {
			h.reject(s, pk.TopicName, req.ID, api.CodeInvalidValue, "bad_event", err.Error())
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

// samples validates measurepoint params (an object, or an array of objects for batches) into rec.
func (h *hook) samples(rec *api.Record, raw json.RawMessage, model *registry.Model) (int, string, error) {
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
	now := h.now()
	oldest, newest := now.Add(-h.cfg.MaxSampleAge).UnixMilli(), now.Add(h.cfg.MaxSampleFuture).UnixMilli()
	for _, p := range batch {
		if len(p.Measurepoints) == 0 {
			return api.CodeBadRequest, "no_points", errors.New("params.measurepoints is empty")
		}
		t := p.Time
		if t == 0 {
			t = rec.Received
		}
		if t < oldest || t > newest {
			return api.CodeInvalidValue, "bad_time", fmt.Errorf("time %d is outside the accepted window [%d, %d]", t, oldest, newest)
		}
		for id, v := range p.Measurepoints {
			s := api.Sample{Point: id, Time: t}
			if v = bytes.TrimSpace(v); len(v) > 0 && v[0] == '{' {
				var qv api.QualityValue
				if err := json.Unmarshal(v, &qv); err != nil {
					return api.CodeBadRequest, "bad_json", fmt.Errorf("measurepoint %s: %w", id, err)
				}
				v = qv.Value
				if qv.Quality != nil {
					if *qv.Quality < 0 || *qv.Quality > 127 {
						return api.CodeInvalidValue, "bad_value", fmt.Errorf("measurepoint %s: quality %d outside 0..127", id, *qv.Quality)
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

// event validates a device event post and encodes it for gale.events.
func (h *hook) event(dev api.Device, id string, req api.Request, model *registry.Model) ([]byte, error) {
	var def *api.Event
	for i := range model.Product.Model.Events {
		if model.Product.Model.Events[i].ID == id {
			def = &model.Product.Model.Events[i]
		}
	}
	if def == nil {
		return nil, fmt.Errorf("event %q is not in the thing model of %s", id, dev.ProductKey)
	}
	var p struct {
		Time  int64           `json:"time"`
		Value json.RawMessage `json:"value"`
	}
	if len(req.Params) > 0 {
		if err := json.Unmarshal(req.Params, &p); err != nil {
			return nil, fmt.Errorf("params: %w", err)
		}
	}
	if p.Time == 0 {
		p.Time = h.now().UnixMilli()
	}
	return json.Marshal(api.DeviceEvent{
		Type: api.EventTypeDevice, Org: dev.Org, Product: dev.ProductKey, Device: dev.DeviceKey, Site: dev.Site,
		Event: id, Severity: def.Severity, Time: p.Time, Params: p.Value,
	})
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
