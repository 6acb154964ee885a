package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
)

// AlertStore persists alert episodes and the engine's snapshot.
type AlertStore interface {
	FireAlert(ctx context.Context, a api.Alert) (api.Alert, bool, error)
	ResolveAlert(ctx context.Context, rule, key string, startedAt, resolvedAt int64, value float64) (api.Alert, bool, error)
	SaveRuleState(ctx context.Context, name string, snapshot []byte) error
	RuleState(ctx context.Context, name string) ([]byte, error)
}

// Service runs the event engine on the telemetry and event topics: it
// evaluates live samples, stores alert episodes (idempotently, so a replay
// after a crash neither loses nor repeats one) and announces them on gale.events.
type Service struct {
	store    AlertStore
	producer bus.Producer
	sites    AssetSites
	dir      string
	log      *slog.Logger

	mu     sync.Mutex
	engine *Engine
	rec    api.Record

	// Streams, for nodata rules: the gateway of each device (from the
	// registry, when the store is one), the source name of each device and
	// partition, the lane name of each partition, and when a batch was last
	// handled (a consumer idle for idleAfter has read every partition).
	devices    deviceLookup
	sources    map[sourceKey]string
	laneNames  []string
	lastHandle time.Time
	idleAfter  time.Duration

	samples     prometheus.Counter
	late        prometheus.Counter
	transitions *prometheus.CounterVec
	evalSeconds prometheus.Histogram
	rulesLoaded prometheus.Gauge
	refused     prometheus.Gauge
}

// stateName is the snapshot's name in the store.
const stateName = "stream"

// idleAfter is how long the consumer must have handed nothing before every
// partition counts as read to its end, so that the wall clock moves all lanes.
const idleAfter = 15 * time.Second

// deviceLookup finds a device in the registry (for the gateway of a sub-device).
type deviceLookup interface {
	Device(pk, dk string) (api.Device, bool)
}

type sourceKey struct {
	product, device string
	partition       int
}

// NewService loads the rule files of dir (see Files) and the engine's saved
// state. A file that fails validation is refused (logged with file:line) and
// the others are loaded, so one bad file does not keep the node from starting.
func NewService(ctx context.Context, dir string, sites AssetSites, store AlertStore, producer bus.Producer, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	rules, errs := loadEach(files)
	for _, err := range errs {
		log.Error("rule file refused; the node runs on without it", "err", err)
	}
	s := &Service{store: store, producer: producer, sites: sites, dir: dir, log: log, engine: NewEngine(rules, sites),
		sources: map[sourceKey]string{}, lastHandle: time.Now(), idleAfter: idleAfter,
		samples: prometheus.NewCounter(prometheus.CounterOpts{Name: "gale_rules_samples_total", Help: "Live samples evaluated by the event engine."}),
		late:    prometheus.NewCounter(prometheus.CounterOpts{Name: "gale_rules_late_samples_total", Help: "Samples not evaluated because a newer one of their point was already seen."}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_alert_transitions_total", Help: "Alert lifecycle transitions, by kind and severity.",
		}, []string{"kind", "severity"}),
		evalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gale_rules_eval_seconds", Help: "Time to evaluate one batch of records.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		rulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gale_rules_loaded", Help: "Streaming rules loaded."}),
		refused:     newRefusedGauge("stream"),
	}
	s.rulesLoaded.Set(float64(len(rules)))
	s.refused.Set(float64(len(errs)))
	if err := registerAll(reg, s.samples, s.late, s.transitions, s.evalSeconds, s.rulesLoaded, s.refused); err != nil {
		return nil, err
	}
	snap, err := store.RuleState(ctx, stateName)
	if err != nil {
		return nil, err
	}
	if snap != nil {
		if err := s.engine.Restore(snap); err != nil {
			return nil, err
		}
		// Until the consumer shows a partition read to its end (or goes
		// idle), the wall clock must not declare its devices silent: their
		// records of the time the node was down are still to be read.
		s.engine.SetLanesBehind(true)
	}
	s.devices, _ = store.(deviceLookup)
	return s, nil
}

// lane names m's partition and records whether the consumer has read it to its end.
func (s *Service) lane(m *bus.Message) string {
	for len(s.laneNames) <= m.Partition {
		s.laneNames = append(s.laneNames, strconv.Itoa(len(s.laneNames)))
	}
	name := s.laneNames[m.Partition]
	s.engine.SetLaneBehind(name, m.HighWaterMark > 0 && m.Offset+1 < m.HighWaterMark)
	return name
}

// source names the stream rec came in: its gateway (or itself) and the partition.
func (s *Service) source(rec *api.Record, partition int) string {
	k := sourceKey{rec.Product, rec.Device, partition}
	if name, ok := s.sources[k]; ok {
		return name
	}
	stream := rec.Product + "/" + rec.Device
	if s.devices != nil {
		if d, ok := s.devices.Device(rec.Product, rec.Device); ok && d.GatewayDeviceKey != "" {
			stream = d.GatewayProductKey + "/" + d.GatewayDeviceKey
		}
	}
	name := stream + "@" + strconv.Itoa(partition)
	s.sources[k] = name
	return name
}

// Handle evaluates a batch of telemetry records and device events.
func (s *Service) Handle(ctx context.Context, batch []bus.Message) error {
	start := time.Now()
	s.mu.Lock()
	var ts []Transition
	for i := range batch {
		m := &batch[i]
		switch m.Topic {
		case api.TopicTelemetry:
			if err := api.DecodeRecord(m.Value, &s.rec); err != nil {
				s.log.Warn("skipping undecodable telemetry record", "offset", m.Offset, "err", err)
				continue
			}
			lane := s.lane(m)
			var late int
			ts, late = observeRecord(s.engine, &s.rec, s.source(&s.rec, m.Partition), lane, ts)
			s.late.Add(float64(late))
			s.samples.Add(float64(len(s.rec.Samples)))
		case api.TopicEvents:
			var ev api.DeviceEvent
			if json.Unmarshal(m.Value, &ev) != nil || ev.Type != api.EventTypeDevice {
				continue // alerts and other announcements share the topic
			}
			ts = append(ts, s.engine.ObserveEvent(ev.Org, ev.Product, ev.Device, ev.Site, ev.Event, ev.Time)...)
		}
	}
	ts = append(ts, s.engine.Advance(0)...)
	s.lastHandle = time.Now()
	s.mu.Unlock()
	s.evalSeconds.Observe(time.Since(start).Seconds())
	return s.apply(ctx, ts)
}

// AdvanceTo moves the clock of every partition read to its end to at least t
// (the wall clock less a grace, for nodata rules when a whole gateway or
// every device went silent), and event time for event rules, and applies
// what follows. A partition the consumer has not read to its end keeps the
// arrival time of its last record read.
func (s *Service) AdvanceTo(ctx context.Context, t time.Time) error {
	s.mu.Lock()
	if time.Since(s.lastHandle) >= s.idleAfter {
		s.engine.SetLanesBehind(false)
	}
	ts := s.engine.Advance(t.UnixMilli())
	s.mu.Unlock()
	return s.apply(ctx, ts)
}

// apply stores and announces transitions.
func (s *Service) apply(ctx context.Context, ts []Transition) error {
	var msgs []bus.Message
	for _, t := range ts {
		s.transitions.WithLabelValues(string(t.Kind), t.Severity).Inc()
		var a api.Alert
		var changed bool
		var err error
		switch t.Kind {
		case Firing:
			a, changed, err = s.store.FireAlert(ctx, api.Alert{Rule: t.Rule, Severity: t.Severity, Source: "stream", Key: t.Key,
				Device: t.Device, Site: t.Site, Org: t.Org, Value: t.Value, Message: t.Message, StartedAt: t.StartedAt, FiredAt: t.At})
		case Resolved:
			a, changed, err = s.store.ResolveAlert(ctx, t.Rule, t.Key, t.StartedAt, t.At, t.Value)
		default:
			continue
		}
		if err != nil {
			return err
		}
		if !changed {
			continue // a replayed transition: already stored and announced
		}
		s.log.Info("alert "+a.State, "rule", a.Rule, "key", a.Key, "id", a.ID, "message", a.Message)
		b, _ := json.Marshal(api.AlertEvent{Type: api.EventTypeAlert, Alert: a})
		msgs = append(msgs, bus.Message{Topic: api.TopicEvents, Key: []byte(a.Rule + "/" + a.Key), Value: b})
	}
	if len(msgs) > 0 && s.producer != nil {
		if err := s.producer.Produce(ctx, msgs...); err != nil {
			return fmt.Errorf("announce alerts: %w", err)
		}
	}
	return nil
}

// Checkpoint saves the engine's state; the consumer commits offsets right after.
func (s *Service) Checkpoint(ctx context.Context) error {
	s.mu.Lock()
	snap, err := s.engine.Snapshot()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.store.SaveRuleState(ctx, stateName, snap)
}

func loadDir(dir string) ([]*Rule, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	return LoadFiles(files...)
}

// Reload reads the rule files again; on error the current rules stay.
// Alert state of rules that remain is kept.
func (s *Service) Reload() error {
	rules, err := loadDir(s.dir)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.engine.SetRules(rules, s.sites)
	clear(s.sources) // a sub-device may have moved to another gateway
	s.mu.Unlock()
	s.rulesLoaded.Set(float64(len(rules)))
	s.refused.Set(0)
	return nil
}

// RuleInfo describes a loaded rule for the API.
type RuleInfo struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Severity string `json:"severity"`
	Location string `json:"location"`
	Point    string `json:"point,omitempty"`
	Expr     string `json:"expr,omitempty"`
	For      string `json:"for,omitempty"`
	Scope    Scope  `json:"scope"`
	// Org owns the rule: a streaming rule's org, a PromQL rule's org label
	// (all it reads, records or alerts is of that org); empty for a cluster rule.
	Org string `json:"org,omitempty"`
}

// Rules lists the loaded rules.
func (s *Service) Rules() []RuleInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []RuleInfo{}
	for _, r := range s.engine.Rules() {
		info := RuleInfo{Name: r.Name, Type: r.Type, Severity: r.Severity, Location: r.Location(), Point: r.Point, Scope: r.Scope, Org: r.Org}
		if r.For > 0 {
			info.For = time.Duration(r.For).String()
		}
		out = append(out, info)
	}
	return out
}

// Pending lists alerts whose condition holds but whose for-duration has not elapsed.
func (s *Service) Pending() []api.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []api.Alert{}
	for _, t := range s.engine.PendingAlerts() {
		out = append(out, api.Alert{Rule: t.Rule, Severity: t.Severity, Source: "stream", Key: t.Key, Device: t.Device,
			Site: t.Site, Org: t.Org, State: api.AlertPending, Value: t.Value, StartedAt: t.StartedAt})
	}
	return out
}
