package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/gale-iot/gale/platform/edge"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/rules"
	"github.com/gale-iot/gale/stack"
	"github.com/gale-iot/gale/twins"
)

// Option tunes Run.
type Option func(*runner)

// WithLogger sends the stack's logs to log (default: discarded).
func WithLogger(log *slog.Logger) Option { return func(r *runner) { r.log = log } }

// runner is one scenario run.
type runner struct {
	sc  *Scenario
	log *slog.Logger

	st      *stack.Stack
	api     *client
	t0      time.Time // sim time at the start of the timeline
	wall0   time.Time
	proxies map[string]*proxy // by gateway
	edges   map[string]*edgeProc

	mu       sync.Mutex
	bg       sync.WaitGroup
	loads    map[string]*loadRun
	storms   map[string]*stormRun
	commands map[string][]commandResult
	timeline []Event
}

// Event is one timeline step as it ran.
type Event struct {
	// Step is the index in the timeline; Line its line in the file.
	Step, Line int
	// What describes the step.
	What string
	// Sim and Wall are when it started, since the start of the timeline.
	Sim, Wall time.Duration
	// Err is why it failed.
	Err string
}

func (e Event) String() string {
	s := fmt.Sprintf("sim %-8s wall %-7s line %-3d %s", e.Sim.Round(time.Second), e.Wall.Round(100*time.Millisecond), e.Line, e.What)
	if e.Err != "" {
		s += ": " + e.Err
	}
	return s
}

// edgeProc is an edge gateway the runner can kill and start again.
type edgeProc struct {
	cfg    edge.Config
	cancel context.CancelFunc
	done   chan error
}

// Run runs the scenario in file on a fresh in-process stack (temporary data
// dir, loopback ports) and returns its result. The error is for runs that
// could not take place or whose timeline failed; failed assertions are in
// the result (Result.Failed).
func Run(ctx context.Context, file string, opts ...Option) (Result, error) {
	sc, err := Load(file)
	if err != nil {
		return Result{File: file}, err
	}
	r := &runner{sc: sc, log: slog.New(slog.NewTextHandler(io.Discard, nil)), proxies: map[string]*proxy{},
		edges: map[string]*edgeProc{}, loads: map[string]*loadRun{}, storms: map[string]*stormRun{},
		commands: map[string][]commandResult{}}
	for _, o := range opts {
		o(r)
	}
	started := time.Now()
	res, err := r.run(ctx)
	res.Name, res.File, res.Wall = sc.Name, file, time.Since(started)
	return res, err
}

func (r *runner) run(ctx context.Context) (Result, error) {
	dir, err := os.MkdirTemp("", "gale-scenario-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	if err := r.build(ctx, dir); err != nil {
		return Result{}, err
	}
	runCtx, stop := context.WithCancel(ctx)
	stackDone := make(chan error, 1)
	go func() { stackDone <- r.st.Run(runCtx) }()
	defer func() {
		r.stopEdges()
		for _, p := range r.proxies {
			p.Close()
		}
		stop()
		if err := <-stackDone; err != nil {
			r.log.Warn("stack stopped with an error", "err", err)
		}
	}()
	if err := r.waitReady(runCtx); err != nil {
		return Result{}, err
	}
	r.t0, r.wall0 = r.st.Fleet.Now(), time.Now()
	runErr := r.runTimeline(runCtx)
	r.bg.Wait()
	res := Result{Timeline: r.timeline, Sim: r.st.Fleet.Now().Sub(r.t0)}
	if runErr != nil {
		return r.figures(res), runErr
	}
	res.Assertions = r.check(runCtx)
	return r.figures(res), ctx.Err()
}

// build prepares the rules, the node, the fleet and the stack in dir.
func (r *runner) build(ctx context.Context, dir string) error {
	top := r.sc.Topology
	cfg := node.DefaultConfig()
	cfg.DataDir = dir
	cfg.HTTP.Addr, cfg.MQTT.Addr, cfg.Kafka.EmbeddedAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Rules.Dir = filepath.Join(dir, "rules")
	if err := cfg.Complete(); err != nil {
		return err
	}
	if err := rules.InstallShipped(cfg.Rules.Dir); err != nil {
		return fmt.Errorf("install rules: %w", err)
	}
	for _, f := range top.Rules {
		if !filepath.IsAbs(f) {
			f = filepath.Join(filepath.Dir(r.sc.file), f)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("rule file: %w", err)
		}
		if err := os.WriteFile(filepath.Join(cfg.Rules.Dir, "scenario-"+filepath.Base(f)), b, 0o644); err != nil {
			return fmt.Errorf("install rule file: %w", err)
		}
	}
	fleet, err := twins.DemoConfig(top.Turbines, "127.0.0.1:0")
	if err != nil {
		return err
	}
	fleet.Seed, fleet.Speed = top.Seed, top.Speed
	if top.Speed > 1 {
		// The wind has a daily cycle: an accelerated scenario starts at 10:00 UTC
		// tomorrow, so its plant behaves the same whenever it runs (and its sim
		// time stays ahead of the wall clock, which no-data rules also follow).
		fleet.Start = time.Now().UTC().Truncate(24 * time.Hour).Add(34 * time.Hour)
	}
	r.st, err = stack.New(ctx, stack.Config{Node: cfg, Fleet: fleet, Turbines: top.Turbines, NoEdges: true}, r.log)
	if err != nil {
		return fmt.Errorf("start stack: %w", err)
	}
	tok, err := os.ReadFile(r.st.Node.TokenFile)
	if err != nil {
		return fmt.Errorf("read admin token: %w", err)
	}
	r.api = &client{base: "http://" + r.st.Node.HTTPAddr(), token: string(bytes.TrimSpace(tok)), http: &http.Client{Timeout: 30 * time.Second}}
	return nil
}

// waitReady waits for the node and the fleet, then starts the edges.
func (r *runner) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(r.api.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return errors.New("node not ready after 30s")
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	select {
	case <-r.st.Fleet.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.startEdges(ctx)
}

// startEdges starts the topology's edges, each gateway's behind a proxy the
// timeline can cut.
func (r *runner) startEdges(ctx context.Context) error {
	names := sortedKeys(r.sc.edgeNames())
	udp := map[string]string{}
	for _, name := range names {
		gw := r.sc.edgeNames()[name]
		cfg, err := r.st.EdgeConfig(gw)
		if err != nil {
			return err
		}
		p, ok := r.proxies[gw]
		if !ok {
			if p, err = newProxy(r.st.Node.MQTTAddr()); err != nil {
				return err
			}
			r.proxies[gw] = p
		}
		cfg.Cloud.MQTTAddr = p.Addr()
		cfg.Cloud.ReconnectMax = time.Second
		if r.sc.Topology.Edges == EdgesHA {
			for _, n := range []string{gw + "/a", gw + "/b"} {
				if udp[n] == "" {
					if udp[n], err = freeUDP(); err != nil {
						return err
					}
				}
			}
			self, peer := name, gw+"/b"
			if name == gw+"/b" {
				peer = gw + "/a"
			}
			cfg.DataDir = filepath.Join(cfg.DataDir, filepath.Base(name))
			cfg.HA = &edge.HAConfig{Node: filepath.Base(name), Listen: udp[self], Peer: udp[peer]}
		}
		r.edges[name] = &edgeProc{cfg: cfg}
		if err := r.startEdge(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) startEdge(ctx context.Context, name string) error {
	e := r.edges[name]
	if e.cancel != nil {
		return fmt.Errorf("edge %s is running", name)
	}
	ed, err := edge.New(e.cfg, r.log.With("component", "edge", "edge", name), edge.WithClock(r.st.Fleet.Clock()))
	if err != nil {
		return fmt.Errorf("edge %s: %w", name, err)
	}
	ectx, cancel := context.WithCancel(ctx)
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- ed.Run(ectx) }()
	return nil
}

func (r *runner) killEdge(name string) error {
	e := r.edges[name]
	if e.cancel == nil {
		return fmt.Errorf("edge %s is not running", name)
	}
	e.cancel()
	err := <-e.done
	e.cancel = nil
	if err != nil {
		return fmt.Errorf("edge %s stopped with: %w", name, err)
	}
	return nil
}

func (r *runner) stopEdges() {
	for name, e := range r.edges {
		if e.cancel != nil {
			if err := r.killEdge(name); err != nil {
				r.log.Warn("stop edge", "err", err)
			}
		}
	}
}

// runTimeline runs the steps in order, each at its time.
func (r *runner) runTimeline(ctx context.Context) error {
	for i, st := range r.sc.Timeline {
		if err := r.waitFor(ctx, st); err != nil {
			return err
		}
		ev := Event{Step: i, Line: r.sc.StepLine(i), What: st.String(), Sim: r.st.Fleet.Now().Sub(r.t0), Wall: time.Since(r.wall0)}
		err := r.do(ctx, st)
		if err != nil {
			ev.Err = err.Error()
		}
		r.record(ev)
		if err != nil {
			return fmt.Errorf("line %d: %s: %w\n%s", ev.Line, ev.What, err, r.tail(5))
		}
	}
	return nil
}

func (r *runner) record(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timeline = append(r.timeline, ev)
}

// tail formats the last n timeline events.
func (r *runner) tail(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.timeline[max(0, len(r.timeline)-n):]
	var b bytes.Buffer
	b.WriteString("  timeline (last steps):\n")
	for _, ev := range evs {
		fmt.Fprintf(&b, "    %s\n", ev)
	}
	fmt.Fprintf(&b, "    now: sim %s, wall %s", r.st.Fleet.Now().Sub(r.t0).Round(time.Second), time.Since(r.wall0).Round(100*time.Millisecond))
	return b.String()
}

// waitFor blocks until the step's sim or wall time.
func (r *runner) waitFor(ctx context.Context, st Step) error {
	for {
		var left time.Duration
		if st.At != nil {
			left = time.Duration(float64(*st.At-r.st.Fleet.Now().Sub(r.t0)) / r.st.Fleet.Clock().Speed())
		} else {
			left = *st.Wall - time.Since(r.wall0)
		}
		if left <= 0 {
			return nil
		}
		if err := sleep(ctx, min(left, 50*time.Millisecond)); err != nil {
			return err
		}
	}
}

// do runs one step's action.
func (r *runner) do(ctx context.Context, st Step) error {
	switch {
	case st.Load != nil:
		r.startLoad(ctx, *st.Load)
	case st.Inject != nil:
		return r.fault(ctx, http.MethodPost, *st.Inject)
	case st.Clear != nil:
		return r.fault(ctx, http.MethodDelete, *st.Clear)
	case st.Cut != "":
		r.proxies[st.Cut].Cut()
	case st.Restore != "":
		r.proxies[st.Restore].Restore()
	case st.Kill != "":
		return r.killEdge(st.Kill)
	case st.Start != "":
		return r.startEdge(ctx, st.Start)
	case st.Command != nil:
		return r.command(ctx, *st.Command)
	case st.Backfill != nil:
		return r.backfill(ctx, *st.Backfill)
	case st.Storm != nil:
		return r.startStorm(ctx, *st.Storm)
	}
	return nil
}

// String describes the step for the timeline.
func (st Step) String() string {
	switch {
	case st.Load != nil:
		return fmt.Sprintf("load %s: %d devices, %g msg/s for %s", st.Load.Name, st.Load.Devices, st.Load.Rate, st.Load.Duration)
	case st.Inject != nil:
		return "inject " + st.Inject.String()
	case st.Clear != nil:
		return "clear " + st.Clear.String()
	case st.Cut != "":
		return "cut the link of " + st.Cut
	case st.Restore != "":
		return "restore the link of " + st.Restore
	case st.Kill != "":
		return "kill edge " + st.Kill
	case st.Start != "":
		return "start edge " + st.Start
	case st.Command != nil:
		return fmt.Sprintf("command %s: %s %s ×%d", st.Command.Name, st.Command.Device, st.Command.Service, st.Command.Count)
	case st.Backfill != nil:
		b := st.Backfill
		return fmt.Sprintf("backfill %s %s=%g over %s", b.Device, b.Point, b.Value, b.Span)
	case st.Storm != nil:
		return fmt.Sprintf("storm %s: %g bad msg/s for %s", st.Storm.Name, st.Storm.Rate, st.Storm.Duration)
	}
	return "wait"
}

func (f FaultStep) String() string {
	target := "turbine " + f.Turbine
	if f.Gateway != "" {
		target = "gateway " + f.Gateway
		if f.Unit != 0 {
			target += fmt.Sprintf(" unit %d", f.Unit)
		}
	}
	if f.Fault == "" {
		return target
	}
	s := f.Fault + " on " + target
	if f.Code != 0 {
		s += fmt.Sprintf(" (code %d)", f.Code)
	}
	return s
}

// fault injects (POST) or clears (DELETE) a fault through the twin control API.
func (r *runner) fault(ctx context.Context, method string, f FaultStep) error {
	if f.Turbine != "" {
		var body any
		if method == http.MethodPost {
			body = map[string]string{"fault": f.Fault}
		}
		return r.api.do(ctx, method, "/twins/v1/turbines/"+f.Turbine+"/faults", body, nil)
	}
	body := map[string]any{"fault": f.Fault}
	if f.Unit != 0 {
		body["unit"] = f.Unit
	}
	if f.Code != 0 {
		body["code"] = f.Code
	}
	if method == http.MethodDelete && f.Fault == "" {
		body = nil
	}
	return r.api.do(ctx, method, "/twins/v1/gateways/"+f.Gateway+"/faults", body, nil)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func freeUDP() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}

// sortedKeys is keys for any map keyed by string.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
