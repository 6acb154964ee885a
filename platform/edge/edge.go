// Package edge is Gale's edge gateway (gale edge): it polls Modbus TCP
// devices by register map, logs them in to the cloud as sub-devices of a
// gateway device and publishes their measurepoints on their own topics. A
// durable local queue holds every sample until the cloud acknowledges it,
// so an outage is replayed in order through measurepoint/resume; service
// calls become Modbus writes; thing models are cached locally; and two
// edges can run as an active/standby pair.
//
// Data flow: pollers (one goroutine per Modbus target) → Queue (SQLite) →
// uplink (live posts and backlog replay over one MQTT session).
package edge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/httpapi"
)

// Clock is the time source of poll ticks and sample times: the wall clock
// unless WithClock gives another (tests use the twins' simulated clock).
// Connection timeouts, back-offs and HA heartbeats always use wall time.
type Clock interface {
	Now() time.Time
	// Tick delivers tick times every d until stop is called.
	Tick(d time.Duration) (c <-chan time.Time, stop func())
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) Tick(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// Option changes how New builds the edge.
type Option func(*Edge)

// WithClock polls on c instead of the wall clock.
func WithClock(c Clock) Option { return func(e *Edge) { e.clock = c } }

// Edge is an edge gateway. Build it with New, run it with Run.
type Edge struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	token string
	tls   *tls.Config // towards the cloud; nil: plaintext MQTT
	maps  map[string]*regmap.Map
	reg   *prometheus.Registry
	m     *metrics
	queue atomic.Pointer[Queue]
}

// New checks cfg (after filling its defaults) and prepares the edge.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Edge, error) {
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	token, err := cfg.Cloud.token()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.Cloud.ClientTLS()
	if err != nil {
		return nil, err
	}
	maps, err := cfg.maps()
	if err != nil {
		return nil, err
	}
	log = log.With("gateway", cfg.Gateway.DeviceKey) // every line of the edge names its gateway
	e := &Edge{cfg: cfg, log: log, clock: wallClock{}, token: token, tls: tlsCfg, maps: maps, reg: prometheus.NewRegistry()}
	for _, o := range opts {
		o(e)
	}
	e.m = newMetrics(e.reg, func() (int64, int64) {
		if q := e.queue.Load(); q != nil {
			return q.Len()
		}
		return 0, 0
	})
	return e, nil
}

// Gatherer returns the edge's own metrics registry.
func (e *Edge) Gatherer() prometheus.Gatherer { return e.reg }

// Handler serves /metrics and /healthz.
func (e *Edge) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		var s struct {
			Active    bool  `json:"active"`
			Connected bool  `json:"connected"`
			Queued    int64 `json:"queued"`
		}
		s.Active, s.Connected = e.m.active.Load(), e.m.connected.Load()
		if q := e.queue.Load(); q != nil {
			s.Queued, _ = q.Len()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	})
	return mux
}

// Run loads the thing models (from the cloud or the local copy), opens the
// queue and serves until ctx ends: always active without HA, otherwise
// while elected. It returns nil on cancellation.
func (e *Edge) Run(ctx context.Context) error {
	if err := os.MkdirAll(e.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	plans, err := e.plans(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while fetching the models
		}
		return err
	}
	q, err := OpenQueue(filepath.Join(e.cfg.DataDir, "queue.db"), e.cfg.Queue.MaxBytes, e.cfg.Queue.Fsync)
	if err != nil {
		return err
	}
	defer q.Close()
	e.queue.Store(q)
	defer e.queue.Store(nil)

	var el *elector
	if e.cfg.HA != nil {
		if el, err = newElector(*e.cfg.HA, e.cfg.Gateway.ProductKey+"/"+e.cfg.Gateway.DeviceKey, e.log, e.m); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	if e.cfg.HTTPAddr != "" {
		l, err := net.Listen("tcp", e.cfg.HTTPAddr)
		if err != nil {
			if el != nil {
				el.conn.Close()
			}
			return fmt.Errorf("edge http: %w", err)
		}
		srv := httpapi.DefaultConfig().HTTPServer(e.Handler(), e.log)
		g.Go(func() error { return httpapi.Serve(gctx, srv, l, "edge http", time.Second) })
	}
	work := func(ctx context.Context) error { return e.work(ctx, q, plans) }
	if el == nil {
		e.m.active.Store(true)
		defer e.m.active.Store(false)
		g.Go(func() error { return work(gctx) })
	} else {
		g.Go(func() error { return el.run(gctx, work) })
	}
	e.log.Info("edge gateway running", "targets", len(e.cfg.Targets), "ha", e.cfg.HA != nil)
	return g.Wait()
}

// plans fetches (or reads the cached) thing models and builds each unit's
// plan, keyed "pk/dk".
func (e *Edge) plans(ctx context.Context) (map[string]*plan, error) {
	cache, err := newModelCache(filepath.Join(e.cfg.DataDir, "models"), e.cfg.Cloud.APIURL, e.token, e.tls, e.log)
	if err != nil {
		return nil, err
	}
	models := map[string]api.Product{}
	plans := map[string]*plan{}
	for _, t := range e.cfg.Targets {
		for _, u := range t.Units {
			p, ok := models[u.ProductKey]
			if !ok {
				var err error
				if p, err = cache.load(ctx, u.ProductKey); err != nil {
					return nil, err
				}
				models[u.ProductKey] = p
			}
			pl, err := newPlan(e.maps[u.Map], p, e.cfg.Services[u.ProductKey])
			if err != nil {
				return nil, fmt.Errorf("%s/%s: %w", u.ProductKey, u.Device, err)
			}
			plans[u.ProductKey+"/"+u.Device] = pl
		}
	}
	return plans, nil
}

// route is where a sub-device's service calls go.
type route struct {
	p *poller
	u *unitState
}

// work polls and publishes until ctx ends: the active side of the edge.
func (e *Edge) work(ctx context.Context, q *Queue, plans map[string]*plan) error {
	push := func(items []Item) error {
		dropped, err := q.Push(items...)
		if err != nil {
			return err
		}
		for _, it := range items {
			e.m.samples.WithLabelValues(it.DeviceKey).Inc()
		}
		if dropped > 0 {
			e.m.dropped.Add(float64(dropped))
			e.log.Warn("queue full; oldest samples dropped", "dropped", dropped)
		}
		return nil
	}
	routes := map[string]route{}
	var pollers []*poller
	var subs []Unit
	for _, t := range e.cfg.Targets {
		units := make([]*unitState, len(t.Units))
		for i, u := range t.Units {
			units[i] = &unitState{cfg: u, plan: plans[u.ProductKey+"/"+u.Device], last: map[string]any{}}
		}
		p := newPoller(t, units, e.clock, e.cfg.StaleAfter, e.log, e.m, push)
		pollers = append(pollers, p)
		for _, u := range units {
			routes[u.cfg.ProductKey+"/"+u.cfg.Device] = route{p, u}
		}
		subs = append(subs, t.Units...)
	}
	up, err := newUplink(e.cfg, e.tls, subs, q, e.log, e.m, func(call device.ServiceCall) (int, string, any) {
		return e.service(routes, call)
	})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, p := range pollers {
		g.Go(func() error { return p.run(ctx) })
	}
	g.Go(func() error { return up.run(ctx) })
	g.Go(func() error { return up.live(ctx) })
	g.Go(func() error { return up.replay(ctx) })
	g.Go(func() error { return e.reportStatus(ctx, up, q) })
	return g.Wait()
}

// service runs a service call on a sub-device as Modbus writes and
// answers with the written parameters, or with the Modbus error.
func (e *Edge) service(routes map[string]route, call device.ServiceCall) (code int, message string, output any) {
	defer func() {
		e.m.services.WithLabelValues(call.Service, strconv.Itoa(code)).Inc()
		e.log.Info("service call", "device", call.ProductKey+"/"+call.DeviceKey, "service", call.Service, "code", code, "message", message)
	}()
	r, ok := routes[call.ProductKey+"/"+call.DeviceKey]
	if !ok {
		return api.CodeUnknownPoint, "no sub-device " + call.ProductKey + "/" + call.DeviceKey + " behind this edge", nil
	}
	svc, ok := r.u.plan.services[call.Service]
	if !ok {
		return api.CodeNotImplemented, "service " + call.Service + " has no Modbus mapping", nil
	}
	writes, out, err := svc.writes(call.Params)
	if err != nil {
		return api.CodeBadRequest, err.Error(), nil
	}
	for _, w := range writes {
		if err := r.p.write(r.u.cfg.ID, w); err != nil {
			return modbusReply(w.reg.Point, err)
		}
	}
	return api.CodeOK, "", out
}

// modbusReply maps a failed write to a reply: the exception code and text
// in the message and data, 422 for a refused address or value, 503 when the
// device or gateway did not answer, 500 otherwise.
func modbusReply(point string, err error) (int, string, any) {
	code := exceptionCode(err)
	if code == 0 {
		if errors.Is(err, regmap.ErrRange) {
			return api.CodeInvalidValue, fmt.Sprintf("write %s: %v", point, err), nil
		}
		return api.CodeUnavailable, fmt.Sprintf("write %s: %s: %v", point, errorKind(err), err), nil
	}
	reply := api.CodeInternal
	switch code {
	case 0x02, 0x03:
		reply = api.CodeInvalidValue
	case 0x06, 0x0A, 0x0B:
		reply = api.CodeUnavailable
	}
	return reply, fmt.Sprintf("write %s: modbus exception %02X: %v", point, code, err), map[string]int{"exception": int(code)}
}
