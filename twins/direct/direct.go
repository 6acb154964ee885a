// Package direct runs the twin fleet's directly connected MQTT devices: the
// met masts, and the turbines behind no Modbus gateway. Each is a managed
// device.Client that posts its points every interval of sim time (stamped
// with the fleet's sim time), posts its fault events, and answers the
// turbine services setPowerLimit, start, stop and resetFault on the twin.
//
// One process holds thousands of them: the devices share one publishing
// loop and one event loop; per device there is the client's Run goroutine
// and those of its paho connection.
package direct

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/clock"
	"github.com/gale-iot/gale/twins/turbine"
)

// Fleet is what the runner needs of the twin fleet; *twins.Fleet is one.
type Fleet interface {
	Devices() []twins.DeviceInfo
	Points(deviceKey string) (map[string]float64, time.Time, error)
	Events() <-chan turbine.Event
	Invoke(deviceKey, service string, params map[string]any) error
	Clock() *clock.Clock
}

// SecretFunc returns the secret of device (productKey, deviceKey).
type SecretFunc func(productKey, deviceKey string) (string, error)

// Config configures the runner.
type Config struct {
	// Broker is the cloud's MQTT address, host:port.
	Broker string
	// TLS, when set, connects the devices to Broker over TLS with this config.
	TLS *tls.Config
	// TLSFor, when set, gives each device a TLS config of its own (with its
	// own client certificate, for a broker that requires them) instead of TLS.
	TLSFor func(productKey, deviceKey string) (*tls.Config, error)
	// Secret looks the devices' secrets up (from the cloud API or a file).
	Secret SecretFunc
	// Devices are the device keys to run; nil runs every device of the
	// fleet behind no gateway.
	Devices []string
	// Interval is the sim time between two posts of a device (default 10s).
	Interval time.Duration
	// QueueSize bounds each device's backlog while the cloud is unreachable
	// (default 360 posts: an hour at 10s); the oldest are dropped beyond it.
	QueueSize int
}

// Sentinel errors of New.
var (
	ErrConfig        = errors.New("invalid direct devices config")
	ErrBehindGateway = errors.New("device sits behind a Modbus gateway")
)

// secretLookups is how many secrets Run looks up at once.
const secretLookups = 8

// publishSlots spreads each interval's posts over this many instants, so
// thousands of devices do not post in one burst.
const publishSlots = 10

// codeConflict answers a service the turbine's state forbids now (HTTP Conflict).
const codeConflict = 409

// Runner runs the direct devices.
type Runner struct {
	fleet   Fleet
	cfg     Config
	log     *slog.Logger
	devices []twins.DeviceInfo
	index   map[string]int // device key → position in devices and clients
	// points are the shipped thing models' measurepoints by product and
	// id: a device reports each value at its point's resolution.
	points map[string]map[string]api.Measurepoint

	mu      sync.Mutex
	clients []*device.Client // set by Run

	events   prometheus.Counter
	services *prometheus.CounterVec
}

// New checks cfg against the fleet and registers the runner's metrics.
func New(f Fleet, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Runner, error) {
	cfg.Interval = cmp.Or(cfg.Interval, 10*time.Second)
	cfg.QueueSize = cmp.Or(cfg.QueueSize, 360)
	switch {
	case cfg.Broker == "":
		return nil, fmt.Errorf("%w: no MQTT broker address", ErrConfig)
	case cfg.Secret == nil:
		return nil, fmt.Errorf("%w: no secret lookup", ErrConfig)
	case cfg.Interval < 10*time.Millisecond:
		return nil, fmt.Errorf("%w: interval %v below 10ms", ErrConfig, cfg.Interval)
	case cfg.QueueSize < 0:
		return nil, fmt.Errorf("%w: negative queue size", ErrConfig)
	}
	products, err := registry.ShippedProducts()
	if err != nil {
		return nil, fmt.Errorf("thing models: %w", err)
	}
	r := &Runner{fleet: f, cfg: cfg, log: log, index: map[string]int{}, points: map[string]map[string]api.Measurepoint{}}
	for _, p := range products {
		r.points[p.Key] = map[string]api.Measurepoint{}
		for _, mp := range p.Model.Measurepoints {
			r.points[p.Key][mp.ID] = mp
		}
	}
	all := f.Devices()
	byKey := map[string]twins.DeviceInfo{}
	for _, d := range all {
		byKey[d.Key] = d
	}
	keys := cfg.Devices
	if keys == nil {
		for _, d := range all {
			if d.Gateway == "" {
				keys = append(keys, d.Key)
			}
		}
	}
	for _, k := range keys {
		d, ok := byKey[k]
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: %q", twins.ErrUnknownDevice, k)
		case d.Gateway != "":
			return nil, fmt.Errorf("%w: %s behind %s", ErrBehindGateway, k, d.Gateway)
		}
		if _, dup := r.index[k]; dup {
			return nil, fmt.Errorf("%w: %s listed twice", ErrConfig, k)
		}
		r.index[k] = len(r.devices)
		r.devices = append(r.devices, d)
	}
	if err := r.register(reg); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Runner) register(reg prometheus.Registerer) error {
	r.events = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gale_twins_direct_events_total", Help: "Fault events the direct devices posted."})
	r.services = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gale_twins_direct_service_calls_total", Help: "Service calls the direct devices answered, by reply code."}, []string{"code"})
	for _, c := range []prometheus.Collector{r.events, r.services, newCollector(r)} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register direct device metrics: %w", err)
		}
	}
	return nil
}

// Run looks the secrets up, connects every device and posts their points
// and events until ctx ends; then it disconnects them and returns nil. A
// failed secret lookup is an error.
func (r *Runner) Run(ctx context.Context) error {
	secrets, err := r.secrets(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	clients := make([]*device.Client, len(r.devices))
	for i, d := range r.devices {
		tlsCfg := r.cfg.TLS
		if r.cfg.TLSFor != nil {
			if tlsCfg, err = r.cfg.TLSFor(d.Product, d.Key); err != nil {
				return fmt.Errorf("tls of %s/%s: %w", d.Product, d.Key, err)
			}
		}
		clients[i] = device.NewClient(device.Config{
			Broker: r.cfg.Broker, TLS: tlsCfg, ProductKey: d.Product, DeviceKey: d.Key, Secret: secrets[i],
			OnService: r.invoke, QueueSize: r.cfg.QueueSize,
		}, r.log)
	}
	r.mu.Lock()
	r.clients = clients
	r.mu.Unlock()
	r.log.Info("direct devices starting", "devices", len(clients), "broker", r.cfg.Broker, "interval", r.cfg.Interval)

	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { _ = c.Run(ctx) }) // Run returns nil when ctx ends
	}
	wg.Go(func() { r.forwardEvents(ctx, clients) })
	err = r.publish(ctx, clients)
	wg.Wait()
	return err
}

// secrets looks up every device's secret, a few at a time.
func (r *Runner) secrets(ctx context.Context) ([]string, error) {
	secrets := make([]string, len(r.devices))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(secretLookups)
	for i, d := range r.devices {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			s, err := r.cfg.Secret(d.Product, d.Key)
			if err != nil {
				return fmt.Errorf("secret of %s/%s: %w", d.Product, d.Key, err)
			}
			secrets[i] = s
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return secrets, ctx.Err()
}

// publish posts every device's points once per interval of sim time, the
// devices spread over publishSlots instants of it, until ctx ends.
func (r *Runner) publish(ctx context.Context, clients []*device.Client) error {
	if len(clients) == 0 {
		<-ctx.Done()
		return nil
	}
	slots := min(len(clients), publishSlots)
	tick, err := r.fleet.Clock().NewTicker(r.cfg.Interval / time.Duration(slots))
	if err != nil {
		return fmt.Errorf("publish ticker: %w", err)
	}
	defer tick.Stop()
	var st status
	for k := 0; ; k = (k + 1) % slots {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for i := k; i < len(clients); i += slots {
			r.post(r.devices[i].Key, clients[i])
		}
		if k == slots-1 {
			st = r.logStatus(clients, st)
		}
	}
}

// post posts a device's current points, each at its thing model's
// resolution; an offline turbine posts nothing.
func (r *Runner) post(key string, c *device.Client) {
	pts, t, err := r.fleet.Points(key)
	if err != nil {
		return // turbine.ErrOffline: the turbine does not communicate
	}
	model := r.points[r.devices[r.index[key]].Product]
	m := make(map[string]any, len(pts))
	for p, v := range pts {
		m[p] = model[p].Round(v)
	}
	if err := c.Post(t, m); err != nil {
		r.log.Warn("points not posted", "device", key, "err", err)
	}
}

// status is what the runner last logged about its devices.
type status struct {
	connected int
	rejected  uint64
}

// logStatus logs, once per interval, how many devices are connected when
// that changed, and warns when the cloud refused posts (a timestamp outside
// its window, say, with an accelerated clock).
func (r *Runner) logStatus(clients []*device.Client, before status) status {
	var now status
	last := ""
	for _, c := range clients {
		s := c.Stats()
		if s.Connected {
			now.connected++
		}
		now.rejected += s.Rejected
		if s.LastReject != "" {
			last = s.LastReject
		}
	}
	if now.connected != before.connected {
		r.log.Info("direct devices connected", "connected", now.connected, "devices", len(clients))
	}
	if now.rejected > before.rejected {
		r.log.Warn("the cloud refused posts of direct devices", "refused", now.rejected-before.rejected, "last", last)
	}
	return now
}

// forwardEvents posts the fleet's fault events of the runner's devices as
// thing model event "fault" {code, text} when a condition is raised, and
// "faultCleared" {code, text} when the last raised condition of the device
// clears (a derate that ends while a trip is latched clears nothing an
// operator cares about yet). The runner is the fleet's event reader: events
// of other devices are dropped.
func (r *Runner) forwardEvents(ctx context.Context, clients []*device.Client) {
	raised := raisedConditions{}
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-r.fleet.Events():
			i, ok := r.index[e.Device]
			if !ok {
				r.log.Debug("event of a device not run directly dropped", "device", e.Device, "code", e.Code)
				continue
			}
			if !raised.post(e) {
				r.log.Debug("condition cleared while others remain", "device", e.Device, "code", e.Code)
				continue
			}
			if err := clients[i].PostEvent(e.ModelEvent(), e.Time, map[string]any{"code": e.Code, "text": e.Text}); err != nil {
				r.log.Warn("event not posted", "device", e.Device, "err", err)
				continue
			}
			r.events.Inc()
		}
	}
}

// raisedConditions are the codes of each device's raised conditions.
type raisedConditions map[string]map[int]bool

// post records e and reports whether it is posted: every raise, and a clear
// that leaves its device with no raised condition.
func (rc raisedConditions) post(e turbine.Event) bool {
	codes := rc[e.Device]
	if codes == nil {
		codes = map[int]bool{}
		rc[e.Device] = codes
	}
	if e.Active {
		codes[e.Code] = true
		return true
	}
	delete(codes, e.Code)
	return len(codes) == 0
}

// invoke answers a service call on the twin: setPowerLimit {limit} (kW),
// start, stop, resetFault.
func (r *Runner) invoke(call device.ServiceCall) (int, string, any) {
	code, msg, out := r.call(call)
	r.services.WithLabelValues(fmt.Sprint(code)).Inc()
	if code != api.CodeOK {
		r.log.Info("service refused", "device", call.DeviceKey, "service", call.Service, "code", code, "message", msg)
	}
	return code, msg, out
}

func (r *Runner) call(call device.ServiceCall) (int, string, any) {
	var params map[string]any
	var out any
	if call.Service == turbine.ServiceSetPowerLimit {
		var in struct {
			Limit *float64 `json:"limit"`
		}
		if err := json.Unmarshal(call.Params, &in); err != nil || in.Limit == nil {
			return api.CodeBadRequest, `setPowerLimit needs a number "limit" (kW)`, nil
		}
		params = map[string]any{turbine.ParamPowerLimit: *in.Limit}
		out = map[string]any{"limit": *in.Limit}
	}
	err := r.fleet.Invoke(call.DeviceKey, call.Service, params)
	switch {
	case err == nil:
		return api.CodeOK, "", out
	case errors.Is(err, twins.ErrUnknownDevice) || errors.Is(err, turbine.ErrUnknownService):
		return api.CodeNotImplemented, err.Error(), nil
	case errors.Is(err, turbine.ErrOutOfRange):
		return api.CodeInvalidValue, err.Error(), nil
	case errors.Is(err, turbine.ErrOffline):
		return api.CodeUnavailable, err.Error(), nil
	case errors.Is(err, turbine.ErrFaultActive) || errors.Is(err, turbine.ErrCauseActive):
		return codeConflict, err.Error(), nil
	}
	return api.CodeInternal, err.Error(), nil
}
