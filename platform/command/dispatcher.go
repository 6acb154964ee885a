// Package command carries service invocations to devices: API → Kafka
// gale.commands → the node holding the device's session → MQTT
// thing/service/{id} → the device's _reply, matched by id. Commands for
// offline devices wait in the registry until the device listens again or
// their TTL passes.
package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/registry"
)

// Store keeps commands.
type Store interface {
	Device(pk, dk string) (api.Device, bool)
	Model(pk string) (*registry.Model, bool)
	CreateCommand(ctx context.Context, c api.Command) error
	Command(ctx context.Context, id string) (api.Command, error)
	MarkCommandSent(ctx context.Context, id string, at int64) (bool, error)
	CompleteCommand(ctx context.Context, id string, code int, message string, output []byte, at int64) (api.Command, bool, error)
	QueuedCommands(ctx context.Context, pk, dk string, now int64) ([]api.Command, error)
	ExpireCommands(ctx context.Context, now int64) (int64, error)
}

// Downlink is the broker as the dispatcher needs it.
type Downlink interface {
	Online(pk, dk string) bool
	Publish(topic string, payload []byte, qos byte) error
}

// Errors the API maps to statuses.
var (
	ErrUnknownDevice  = errors.New("unknown device")
	ErrDeviceDisabled = errors.New("device is disabled")
	ErrUnknownService = errors.New("unknown service")
	ErrBadParams      = errors.New("bad params")
)

// Dispatcher creates, delivers and completes commands.
type Dispatcher struct {
	store    Store
	downlink Downlink
	producer bus.Producer
	log      *slog.Logger

	mu      sync.Mutex
	waiters map[string][]chan api.Command
	online  map[string]bool // devices that became reachable, to flush their queue
	wake    chan struct{}

	sent    prometheus.Counter
	results *prometheus.CounterVec
	expired prometheus.Counter
	rtt     prometheus.Histogram
	ignored *prometheus.CounterVec
}

// New returns a dispatcher.
func New(store Store, downlink Downlink, producer bus.Producer, log *slog.Logger, reg prometheus.Registerer) *Dispatcher {
	auto := promauto.With(reg)
	d := &Dispatcher{store: store, downlink: downlink, producer: producer, log: log,
		waiters: map[string][]chan api.Command{}, online: map[string]bool{}, wake: make(chan struct{}, 1),
		sent: auto.NewCounter(prometheus.CounterOpts{Name: "gale_commands_sent_total", Help: "Commands published to devices."}),
		results: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_commands_completed_total", Help: "Commands answered by devices, by status.",
		}, []string{"status"}),
		expired: auto.NewCounter(prometheus.CounterOpts{Name: "gale_commands_expired_total", Help: "Commands whose TTL passed unanswered."}),
		rtt: auto.NewHistogram(prometheus.HistogramOpts{
			Name: "gale_command_roundtrip_seconds", Help: "From sending a command to the device's reply.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		ignored: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_command_replies_ignored_total", Help: "Service replies that completed no command, by reason.",
		}, []string{"reason"}),
	}
	return d
}

// Invoke validates and stores a command, then puts it on gale.commands.
func (d *Dispatcher) Invoke(ctx context.Context, pk, dk, service string, params json.RawMessage, ttl time.Duration) (api.Command, error) {
	if dev, ok := d.store.Device(pk, dk); !ok {
		return api.Command{}, fmt.Errorf("%w %s/%s", ErrUnknownDevice, pk, dk)
	} else if !dev.Enabled {
		return api.Command{}, fmt.Errorf("%w: %s/%s", ErrDeviceDisabled, pk, dk)
	}
	model, ok := d.store.Model(pk)
	if !ok {
		return api.Command{}, fmt.Errorf("%w %s/%s: product has no thing model", ErrUnknownDevice, pk, dk)
	}
	svc, ok := model.Service(service)
	if !ok {
		return api.Command{}, fmt.Errorf("%w %q: not in the thing model of %s", ErrUnknownService, service, pk)
	}
	if err := checkParams(svc, params); err != nil {
		return api.Command{}, err
	}
	now := time.Now()
	c := api.Command{ID: registry.NewCommandID(), ProductKey: pk, DeviceKey: dk, Service: service, Params: params,
		Status: api.CommandQueued, CreatedAt: now.UnixMilli(), ExpiresAt: now.Add(ttl).UnixMilli()}
	if err := d.store.CreateCommand(ctx, c); err != nil {
		return c, err
	}
	return c, d.announce(ctx, c)
}

// checkParams checks params against the service's inputs: an object whose
// keys are declared inputs, whose numbers are numbers (whole for an int)
// within the input's min and max.
func checkParams(svc *api.Service, params json.RawMessage) error {
	if len(params) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(params, &m); err != nil {
		return fmt.Errorf("%w: params must be a JSON object: %v", ErrBadParams, err)
	}
	inputs := map[string]api.Param{}
	for _, p := range svc.Input {
		inputs[p.ID] = p
	}
	for k, v := range m {
		in, ok := inputs[k]
		if !ok {
			return fmt.Errorf("%w: %q is not an input of service %s", ErrBadParams, k, svc.ID)
		}
		if in.Type != api.TypeFloat && in.Type != api.TypeInt {
			continue
		}
		var f float64
		if json.Unmarshal(v, &f) != nil {
			return fmt.Errorf("%w: %q must be a number", ErrBadParams, k)
		}
		if in.Type == api.TypeInt && f != math.Trunc(f) {
			return fmt.Errorf("%w: %q must be a whole number, not %g", ErrBadParams, k, f)
		}
		if err := registry.CheckRange(f, in.Min, in.Max); err != nil {
			return fmt.Errorf("%w: %q is %v", ErrBadParams, k, err)
		}
	}
	return nil
}

// Wait blocks until command id is answered or expired, or ctx ends; it then returns the command as stored.
func (d *Dispatcher) Wait(ctx context.Context, id string) (api.Command, error) {
	ch := make(chan api.Command, 1)
	d.mu.Lock()
	d.waiters[id] = append(d.waiters[id], ch)
	d.mu.Unlock()
	defer d.forget(id, ch)
	if c, err := d.store.Command(ctx, id); err != nil || done(c) {
		return c, err
	}
	select {
	case c := <-ch:
		return c, nil
	case <-ctx.Done():
		return d.store.Command(context.Background(), id)
	}
}

func done(c api.Command) bool {
	return c.Status == api.CommandSucceeded || c.Status == api.CommandFailed || c.Status == api.CommandExpired
}

func (d *Dispatcher) forget(id string, ch chan api.Command) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ws := d.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(d.waiters, id)
	} else {
		d.waiters[id] = ws
	}
}

func (d *Dispatcher) notify(c api.Command) {
	d.mu.Lock()
	ws := d.waiters[c.ID]
	d.mu.Unlock()
	for _, w := range ws {
		select {
		case w <- c:
		default:
		}
	}
}

// Handle consumes gale.commands, which every node reads: a new command is
// stored (a node may not have created it) and sent if its device listens
// here; "sent" and answered commands update the local copy, so every node
// knows the outcome and a caller waiting on another node hears of it.
func (d *Dispatcher) Handle(ctx context.Context, batch []bus.Message) error {
	for _, m := range batch {
		var c api.Command
		if err := json.Unmarshal(m.Value, &c); err != nil {
			d.log.Warn("skipping undecodable command", "offset", m.Offset, "err", err)
			continue
		}
		switch c.Status {
		case api.CommandQueued:
			if _, err := d.store.Command(ctx, c.ID); errors.Is(err, registry.ErrNotFound) {
				if err := d.store.CreateCommand(ctx, c); err != nil {
					return err
				}
			}
			if d.downlink.Online(c.ProductKey, c.DeviceKey) {
				if err := d.send(ctx, c); err != nil {
					return err
				}
			}
		case api.CommandSent:
			if _, err := d.store.MarkCommandSent(ctx, c.ID, c.SentAt); err != nil {
				return err
			}
		case api.CommandSucceeded, api.CommandFailed:
			done, ok, err := d.store.CompleteCommand(ctx, c.ID, c.Code, c.Message, c.Output, c.RepliedAt)
			if err != nil {
				return err
			}
			if ok {
				d.notify(done)
			}
		}
	}
	return nil
}

// announce tells every node a command's new status, with its device's org.
func (d *Dispatcher) announce(ctx context.Context, c api.Command) error {
	if dev, ok := d.store.Device(c.ProductKey, c.DeviceKey); ok {
		c.Org = dev.Org
	}
	b, _ := json.Marshal(c)
	return d.producer.Produce(ctx, bus.Message{Topic: api.TopicCommands, Key: []byte(c.ProductKey + "/" + c.DeviceKey), Value: b})
}

// send publishes a queued command to its device, once. A command to a
// device that was disabled or deleted since is not sent (it expires).
func (d *Dispatcher) send(ctx context.Context, c api.Command) error {
	now := time.Now().UnixMilli()
	if c.ExpiresAt <= now {
		return nil
	}
	if dev, ok := d.store.Device(c.ProductKey, c.DeviceKey); !ok || !dev.Enabled {
		d.log.Info("not sending a command to a disabled or deleted device", "command", c.ID, "device", c.ProductKey+"/"+c.DeviceKey)
		return nil
	}
	ok, err := d.store.MarkCommandSent(ctx, c.ID, now)
	if err != nil || !ok {
		return err
	}
	params := c.Params
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	b, _ := json.Marshal(api.Request{ID: c.ID, Version: "1.0", Method: "thing.service." + c.Service, Params: params})
	if err := d.downlink.Publish(api.ServiceTopic(c.ProductKey, c.DeviceKey, c.Service), b, 1); err != nil {
		return fmt.Errorf("publish command %s: %w", c.ID, err)
	}
	d.sent.Inc()
	c.Status, c.SentAt = api.CommandSent, now
	return d.announce(ctx, c)
}

// DeviceOnline notes that a device listens for service calls; its queued commands are sent by Run.
func (d *Dispatcher) DeviceOnline(pk, dk string) {
	d.mu.Lock()
	d.online[pk+"/"+dk] = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// ServiceReply completes the command a device answered. A reply completes a
// command only if it comes from the command's device (the broker's ACL
// vouches for the topic's device), for the command's service, while the
// command waits for its answer; anything else (a guessed or observed
// command id) is ignored and counted.
func (d *Dispatcher) ServiceReply(ctx context.Context, pk, dk, service string, payload []byte) {
	var r struct {
		ID      string          `json:"id"`
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(payload, &r); err != nil || r.ID == "" {
		d.ignore("malformed", pk, dk, service, "")
		return
	}
	c, err := d.store.Command(ctx, r.ID)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		d.ignore("unknown_command", pk, dk, service, r.ID)
		return
	case err != nil:
		d.log.Warn("look up replied command", "command", r.ID, "err", err)
		return
	case c.ProductKey != pk || c.DeviceKey != dk:
		d.ignore("wrong_device", pk, dk, service, r.ID)
		return
	case c.Service != service:
		d.ignore("wrong_service", pk, dk, service, r.ID)
		return
	case done(c):
		d.ignore("completed", pk, dk, service, r.ID)
		return
	}
	c, ok, err := d.store.CompleteCommand(ctx, r.ID, r.Code, r.Message, r.Data, time.Now().UnixMilli())
	if err != nil || !ok {
		if err != nil {
			d.log.Warn("store service reply", "command", r.ID, "err", err)
		}
		return
	}
	d.results.WithLabelValues(c.Status).Inc()
	if c.SentAt > 0 {
		d.rtt.Observe(float64(c.RepliedAt-c.SentAt) / 1000)
	}
	d.notify(c)
	if err := d.announce(ctx, c); err != nil {
		d.log.Warn("announce command result", "command", c.ID, "err", err)
	}
}

func (d *Dispatcher) ignore(reason, pk, dk, service, id string) {
	d.ignored.WithLabelValues(reason).Inc()
	d.log.Debug("ignoring service reply", "reason", reason, "device", pk+"/"+dk, "service", service, "command", id)
}

// Run sends the queued commands of devices that came online and expires old ones, until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
			d.mu.Lock()
			online := d.online
			d.online = map[string]bool{}
			d.mu.Unlock()
			for key := range online {
				d.flush(ctx, key)
			}
		case now := <-tick.C:
			n, err := d.store.ExpireCommands(ctx, now.UnixMilli())
			if err != nil && ctx.Err() == nil {
				d.log.Warn("expire commands", "err", err)
			}
			if n > 0 {
				d.expired.Add(float64(n))
				d.notifyExpired(ctx)
			}
		}
	}
}

func (d *Dispatcher) flush(ctx context.Context, key string) {
	pk, dk, _ := strings.Cut(key, "/")
	cmds, err := d.store.QueuedCommands(ctx, pk, dk, time.Now().UnixMilli())
	if err != nil {
		d.log.Warn("queued commands", "device", key, "err", err)
		return
	}
	for _, c := range cmds {
		if err := d.send(ctx, c); err != nil {
			d.log.Warn("send queued command", "command", c.ID, "err", err)
		}
	}
}

// notifyExpired wakes waiters whose command expired.
func (d *Dispatcher) notifyExpired(ctx context.Context) {
	d.mu.Lock()
	ids := make([]string, 0, len(d.waiters))
	for id := range d.waiters {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	for _, id := range ids {
		if c, err := d.store.Command(ctx, id); err == nil && c.Status == api.CommandExpired {
			d.notify(c)
		}
	}
}
