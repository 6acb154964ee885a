package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
)

// Invoker starts device commands (the command dispatcher).
type Invoker interface {
	Invoke(ctx context.Context, pk, dk, service string, params json.RawMessage, ttl time.Duration) (api.Command, error)
}

// Republisher publishes MQTT messages (the broker).
type Republisher interface {
	Publish(topic string, payload []byte, qos byte) error
}

// Router is the rule engine: each route reads its sources with a consumer
// group of its own ("gale-route-NAME"), so a slow webhook holds back only its
// route. A route commits a message only once every action took it or it went
// to gale.deadletter, so nothing is dropped silently. Like a Kafka Connect
// sink with auto.offset.reset=earliest, a new route starts at the oldest
// retained message.
type Router struct {
	dir      string
	brokers  []string
	busCfg   bus.Config
	producer bus.Producer
	mqtt     Republisher
	invoker  Invoker
	client   *http.Client
	log      *slog.Logger
	reg      prometheus.Registerer // each route's consumer lag gauge, while it runs

	mu     sync.Mutex
	routes []*Route
	reload chan struct{}

	matched *prometheus.CounterVec
	actions *prometheus.CounterVec
}

// NewRouter loads the route files of dir.
func NewRouter(dir string, brokers []string, busCfg bus.Config, producer bus.Producer, mqtt Republisher, invoker Invoker, log *slog.Logger, reg prometheus.Registerer) (*Router, error) {
	// A bad route file is refused (logged with file:line) and the node runs on with the others.
	routes, errs := loadRoutesEach(dir)
	for _, err := range errs {
		log.Error("route file refused; the node runs on without it", "err", err)
	}
	auto := promauto.With(reg)
	r := &Router{dir: dir, brokers: brokers, busCfg: busCfg, producer: producer, mqtt: mqtt, invoker: invoker,
		client: &http.Client{}, log: log, reg: reg, routes: routes, reload: make(chan struct{}, 1),
		matched: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_route_matched_total", Help: "Messages a route matched.",
		}, []string{"route"}),
		actions: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_route_actions_total", Help: "Route action outcomes: ok, retry, deadletter, error.",
		}, []string{"route", "action", "result"}),
	}
	return r, nil
}

// Routes returns the loaded routes.
func (r *Router) Routes() []*Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.routes)
}

// Reload reads the route files again and restarts the routes; on error the current routes stay.
func (r *Router) Reload() error {
	routes, err := LoadRoutes(r.dir)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.routes = routes
	r.mu.Unlock()
	select {
	case r.reload <- struct{}{}:
	default:
	}
	return nil
}

// Run runs every route's consumer until ctx ends, restarting them on Reload.
func (r *Router) Run(ctx context.Context) error {
	for {
		rctx, cancel := context.WithCancel(ctx)
		g, gctx := errgroup.WithContext(rctx)
		for _, rt := range r.Routes() {
			topics := []string{}
			for _, f := range rt.From {
				t := api.TopicTelemetry
				if f != FromTelemetry {
					t = api.TopicEvents
				}
				if !slices.Contains(topics, t) {
					topics = append(topics, t)
				}
			}
			c := bus.NewConsumer(r.brokers, "gale-route-"+rt.Name, topics, r.busCfg,
				func(ctx context.Context, batch []bus.Message) error { return r.handle(ctx, rt, batch) }, r.log)
			g.Go(func() error {
				if unregister, err := bus.RegisterLag(r.reg, c); err != nil {
					r.log.Warn("route consumer lag not measured", "route", rt.Name, "err", err)
				} else {
					defer unregister()
				}
				return c.Run(gctx)
			})
		}
		select {
		case <-ctx.Done():
			cancel()
			return g.Wait()
		case <-r.reload:
			cancel()
			if err := g.Wait(); err != nil {
				return err
			}
		}
	}
}

// routeMsg is what routes match and what webhooks and Kafka actions receive.
type routeMsg struct {
	Type     string             `json:"type"`
	Org      string             `json:"org"`
	Product  string             `json:"product"`
	Device   string             `json:"device"`
	Site     string             `json:"site,omitempty"`
	Time     int64              `json:"time"`
	Points   map[string]float64 `json:"points,omitempty"`
	Backfill bool               `json:"backfill,omitempty"`

	event string
	alert *api.Alert
	raw   []byte
}

// payload is the message as JSON: events and alerts as they are on gale.events.
func (m *routeMsg) payload() []byte {
	if m.raw != nil {
		return m.raw
	}
	b, _ := json.Marshal(m)
	return b
}

// decode turns a Kafka message into the route message, or nil when it is of no interest.
func decode(m bus.Message) *routeMsg {
	switch m.Topic {
	case api.TopicTelemetry:
		var rec api.Record
		if api.DecodeRecord(m.Value, &rec) != nil || len(rec.Samples) == 0 {
			return nil
		}
		out := &routeMsg{Type: "telemetry", Org: rec.Org, Product: rec.Product, Device: rec.Device, Site: rec.Site,
			Time: rec.Samples[0].Time, Points: map[string]float64{}, Backfill: rec.Kind == api.RecordResume}
		for _, s := range rec.Samples {
			out.Points[s.Point] = s.Value
		}
		return out
	case api.TopicEvents:
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(m.Value, &head) != nil {
			return nil
		}
		switch head.Type {
		case api.EventTypeDevice:
			var ev api.DeviceEvent
			if json.Unmarshal(m.Value, &ev) != nil {
				return nil
			}
			return &routeMsg{Type: ev.Type, Org: ev.Org, Product: ev.Product, Device: ev.Device, Site: ev.Site, Time: ev.Time, event: ev.Event, raw: m.Value}
		case api.EventTypeAlert:
			var ev api.AlertEvent
			if json.Unmarshal(m.Value, &ev) != nil {
				return nil
			}
			pk, dk, _ := strings.Cut(ev.Alert.Device, "/")
			return &routeMsg{Type: ev.Type, Org: ev.Alert.Org, Product: pk, Device: dk, Site: ev.Alert.Site, Time: ev.Alert.FiredAt, alert: &ev.Alert, raw: m.Value}
		}
	}
	return nil
}

func (rt *Route) matches(m *routeMsg) bool {
	from := FromTelemetry
	switch m.Type {
	case api.EventTypeDevice:
		from = FromEvents
	case api.EventTypeAlert:
		from = FromAlerts
	}
	mt := rt.Match
	switch {
	case !slices.Contains(rt.From, from),
		!rt.inOrg(m.Org),
		m.Backfill && !rt.IncludeBackfill,
		mt.Product != "" && mt.Product != m.Product,
		len(mt.Devices) > 0 && !slices.Contains(mt.Devices, m.Product+"/"+m.Device),
		mt.Site != "" && mt.Site != m.Site,
		mt.Event != "" && mt.Event != m.event:
		return false
	}
	if mt.Point != "" {
		v, ok := m.Points[mt.Point]
		if !ok || mt.Condition != nil && !mt.Condition.Test(v) {
			return false
		}
	}
	if mt.Rule != "" || mt.Severity != "" || mt.State != "" {
		a := m.alert
		if a == nil || mt.Rule != "" && mt.Rule != a.Rule || mt.Severity != "" && mt.Severity != a.Severity || mt.State != "" && mt.State != a.State {
			return false
		}
	}
	return true
}

// handle runs a route's actions on every matching message of a batch.
func (r *Router) handle(ctx context.Context, rt *Route, batch []bus.Message) error {
	for _, km := range batch {
		m := decode(km)
		if m == nil || !rt.matches(m) {
			continue
		}
		r.matched.WithLabelValues(rt.Name).Inc()
		for _, a := range rt.Actions {
			if err := r.act(ctx, rt, a, m); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r.actions.WithLabelValues(rt.Name, a.kind(), "deadletter").Inc()
				if err := r.deadLetter(ctx, rt, a, m, err); err != nil {
					return err
				}
				continue
			}
			r.actions.WithLabelValues(rt.Name, a.kind(), "ok").Inc()
		}
	}
	return nil
}

// act performs one action; webhooks retry with backoff until their budget is spent.
func (r *Router) act(ctx context.Context, rt *Route, a Action, m *routeMsg) error {
	switch {
	case a.Webhook != nil:
		deadline := time.Now().Add(time.Duration(a.Webhook.RetryFor))
		backoff := 100 * time.Millisecond
		for {
			err := r.post(ctx, a.Webhook, m.payload())
			if err == nil {
				return nil
			}
			if time.Now().Add(backoff).After(deadline) {
				return fmt.Errorf("webhook %s: gave up after %s: %w", a.Webhook.URL, time.Duration(a.Webhook.RetryFor), err)
			}
			r.actions.WithLabelValues(rt.Name, "webhook", "retry").Inc()
			r.log.Debug("webhook failed; retrying", "route", rt.Name, "in", backoff, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff + rand.N(backoff/4+1)):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	case a.Kafka != nil:
		return r.producer.Produce(ctx, bus.Message{Topic: a.Kafka.Topic, Key: []byte(m.Product + "/" + m.Device), Value: m.payload()})
	case a.Republish != nil:
		var topic bytes.Buffer
		if err := a.Republish.tmpl.Execute(&topic, map[string]string{"Device": m.Device, "Product": m.Product, "Site": m.Site, "Kind": m.Type}); err != nil {
			return fmt.Errorf("republish topic: %w", err)
		}
		if err := rt.checkRepublish(topic.String()); err != nil {
			return err
		}
		return r.mqtt.Publish(topic.String(), m.payload(), 1)
	default:
		if m.Device == "" {
			return fmt.Errorf("command %s: the message names no device", a.Command.Service)
		}
		params, _ := json.Marshal(a.Command.Params)
		_, err := r.invoker.Invoke(ctx, m.Product, m.Device, a.Command.Service, params, time.Duration(a.Command.TTL))
		return err
	}
}

func (r *Router) post(ctx context.Context, w *WebhookAction, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(w.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range w.Headers {
		req.Header.Set(k, v)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// deadLetter records a message an action could not take.
func (r *Router) deadLetter(ctx context.Context, rt *Route, a Action, m *routeMsg, cause error) error {
	r.log.Warn("route action failed; message dead-lettered", "route", rt.Name, "action", a.kind(), "err", cause)
	b, _ := json.Marshal(map[string]any{"route": rt.Name, "action": a.kind(), "error": cause.Error(), "payload": json.RawMessage(m.payload())})
	if err := r.producer.Produce(ctx, bus.Message{Topic: api.TopicDeadLetter, Key: []byte(rt.Name), Value: b}); err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	return nil
}
