package scenarios

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gale-iot/gale/platform/apiclient"
	"github.com/gale-iot/gale/platform/edge"
	"github.com/gale-iot/gale/platform/httpapi"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/pki"
	"github.com/gale-iot/gale/platform/rules"
	"github.com/gale-iot/gale/stack"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/direct"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrOtherCloud is returned by Run for a scenario that does not run on the cloud asked for.
var ErrOtherCloud = errors.New("scenario not for this cloud")

// Option tunes Run.
type Option func(*runner)

// WithLogger sends the stack's logs to log (default: discarded).
func WithLogger(log *slog.Logger) Option { return func(r *runner) { r.log = log } }

// WithCloud runs the scenario on the cloud that newCloud returns (called
// once per run) instead of the in-process one.
func WithCloud(newCloud func(log *slog.Logger) Cloud) Option {
	return func(r *runner) { r.newCloud = newCloud }
}

// runner is one scenario run.
type runner struct {
	sc       *Scenario
	log      *slog.Logger
	newCloud func(log *slog.Logger) Cloud
	report   *apiclient.Client // where WithReportTo posts the report; nil: nowhere

	cloud Cloud
	nodes []string
	fleet *twins.Fleet
	plant *stack.Plant
	api   *apiclient.Client // the cloud's API, through the API balancer
	twins *apiclient.Client // the twin control API the runner serves
	// mqtt and http balance the devices' and the runner's connections over the nodes.
	mqtt, http *balancer
	// tls trusts the cloud's development CA (topology.tls), at caFile; nil: plaintext.
	tls    *tls.Config
	caFile string
	links  map[string]*balancer // each gateway's edges' link to the cloud, by gateway
	edges  map[string]*edgeProc
	t0     time.Time // sim time at the start of the timeline
	wall0  time.Time

	mu sync.Mutex
	// bg are the background steps, which end before the assertions; serving
	// the goroutines that serve until the run ends (the twin control API).
	bg, serving sync.WaitGroup
	partitioned map[string]string // node → what it is cut off from
	loads       map[string]*loadRun
	storms      map[string]*stormRun
	commands    map[string][]commandResult
	timeline    []Event
}

// Event is one timeline step as it ran.
type Event struct {
	// Step is the index in the timeline; Line its line in the file.
	Step, Line int
	// What describes the step.
	What string
	// Sim and Wall are when it started, since the start of the timeline.
	Sim, Wall time.Duration
	// Took is how long the step's action took (wall).
	Took time.Duration
	// Err is why it failed.
	Err string
}

func (e Event) String() string {
	s := fmt.Sprintf("sim %-8s wall %-7s line %-3d %s", e.Sim.Round(time.Second), e.Wall.Round(100*time.Millisecond), e.Line, e.What)
	if e.Took >= 100*time.Millisecond {
		s += fmt.Sprintf(" (took %s)", e.Took.Round(100*time.Millisecond))
	}
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

// Run runs the scenario in file on a fresh cloud (in-process unless
// WithCloud says otherwise), with the twin plant and edges in this process,
// and returns its result. The error is for runs that could not take place
// or whose timeline failed; failed assertions are in the result
// (Result.Failed).
func Run(ctx context.Context, file string, opts ...Option) (Result, error) {
	sc, err := Load(file)
	if err != nil {
		return Result{File: file}, err
	}
	r := &runner{sc: sc, log: slog.New(slog.NewTextHandler(io.Discard, nil)), newCloud: InProcess,
		links: map[string]*balancer{}, edges: map[string]*edgeProc{}, partitioned: map[string]string{},
		loads: map[string]*loadRun{}, storms: map[string]*stormRun{}, commands: map[string][]commandResult{}}
	for _, o := range opts {
		o(r)
	}
	r.cloud = r.newCloud(r.log)
	started := time.Now()
	res, err := r.run(ctx)
	res.Name, res.File, res.Cloud, res.Wall = sc.Name, file, r.cloud.Name(), time.Since(started)
	if r.report != nil && !errors.Is(err, ErrOtherCloud) {
		if perr := r.postReport(context.WithoutCancel(ctx), res, err, started); perr != nil {
			r.log.Error("scenario report not posted to the runs page", "err", perr)
		}
	}
	return res, err
}

func (r *runner) run(ctx context.Context) (res Result, err error) {
	if !slices.Contains(r.sc.Topology.RunOn, r.cloud.Name()) {
		return Result{}, fmt.Errorf("%w: it runs on %s (topology.runOn), not on the %s cloud",
			ErrOtherCloud, strings.Join(r.sc.Topology.RunOn, ", "), r.cloud.Name())
	}
	dir, err := os.MkdirTemp("", "gale-scenario-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	defer func() {
		failed := err != nil || len(res.Failed()) > 0
		if cerr := r.cloud.Stop(failed); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cloud: %w", cerr))
		}
	}()
	defer func() {
		for _, b := range []*balancer{r.mqtt, r.http} {
			if b != nil {
				b.Close()
			}
		}
	}()
	if err := r.startCloud(runCtx, dir); err != nil {
		return Result{}, err
	}

	defer func() {
		stop()
		r.serving.Wait()
	}()
	plantDone := make(chan error, 1)
	if err := r.startPlant(runCtx, dir, plantDone); err != nil {
		return Result{}, err
	}
	defer func() {
		r.stopEdges()
		for _, l := range r.links {
			l.Close()
		}
		stop()
		if err := <-plantDone; err != nil {
			r.log.Warn("plant stopped with an error", "err", err)
		}
	}()
	select {
	case <-r.fleet.Ready():
	case <-runCtx.Done():
		return Result{}, runCtx.Err()
	}
	if err := r.startEdges(runCtx); err != nil {
		return Result{}, err
	}
	r.t0, r.wall0 = r.fleet.Now(), time.Now()
	runErr := r.runTimeline(runCtx)
	if runErr != nil {
		stop() // no assertion will read what the background steps measure
	}
	r.bg.Wait()
	res = Result{Timeline: r.timeline, Sim: r.fleet.Now().Sub(r.t0)}
	if runErr != nil {
		return r.figures(res), runErr
	}
	res.Assertions = r.check(runCtx)
	return r.figures(res), ctx.Err()
}

// startCloud prepares the rules, starts the cloud and the balancers in
// front of its nodes, and waits until every node knows the demo fleet.
func (r *runner) startCloud(ctx context.Context, dir string) error {
	top := r.sc.Topology
	rulesDir := filepath.Join(dir, "rules")
	if err := rules.InstallShipped(rulesDir); err != nil {
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
		if err := os.WriteFile(filepath.Join(rulesDir, "scenario-"+filepath.Base(f)), b, 0o644); err != nil {
			return fmt.Errorf("install rule file: %w", err)
		}
	}
	spec := CloudSpec{Nodes: top.Nodes, RulesDir: rulesDir, SeedDemo: node.Demo{Turbines: top.Turbines, Direct: top.Direct}, DataDir: filepath.Join(dir, "cloud"),
		MaxSampleFuture: stack.MaxSampleFuture(top.Speed, node.DefaultConfig().MQTT.MaxSampleFuture)}
	apiClient, scheme := &http.Client{Timeout: 30 * time.Second}, "http://"
	if top.TLS {
		files, err := pki.EnsureDev(filepath.Join(dir, "tls"), nil, time.Now())
		if err != nil {
			return err
		}
		if r.tls, err = (pki.ClientConfig{CAFile: files.CA}).Load(); err != nil {
			return err
		}
		spec.TLS, r.caFile, scheme = &files, files.CA, "https://"
		apiClient.Transport = &http.Transport{TLSClientConfig: r.tls}
	}
	if err := r.cloud.Start(ctx, spec); err != nil {
		return fmt.Errorf("start the %s cloud: %w", r.cloud.Name(), err)
	}
	for i := range top.Nodes {
		r.nodes = append(r.nodes, NodeName(i))
	}
	health := func(ctx context.Context, name string) bool {
		apiURL, _ := r.cloud.Endpoints(name)
		return apiURL != "" && ready(ctx, apiClient, apiURL)
	}
	var err error
	if r.mqtt, err = newBalancer(r.upstreams(func(_, mqtt string) string { return mqtt }), health, false); err != nil {
		return err
	}
	hostPort := func(api, _ string) string { return strings.TrimPrefix(strings.TrimPrefix(api, "http://"), "https://") }
	if r.http, err = newBalancer(r.upstreams(hostPort), health, true); err != nil {
		return err
	}
	if r.api, err = apiclient.New(scheme+r.http.Addr(), apiclient.Options{Token: r.cloud.Token(), TLS: r.tls}); err != nil {
		return err
	}
	last := "/api/v1/devices/wind-turbine/" + node.DemoTurbineKey(top.Turbines+top.Direct)
	return r.onEveryNode(ctx, "know the demo fleet and the admin token", last)
}

// upstreams lists the nodes' addresses that pick chooses among their endpoints.
func (r *runner) upstreams(pick func(apiURL, mqttAddr string) string) func() []upstream {
	return func() []upstream {
		out := make([]upstream, len(r.nodes))
		for i, n := range r.nodes {
			out[i] = upstream{Name: n, Addr: pick(r.cloud.Endpoints(n))}
		}
		return out
	}
}

// onEveryNode waits until GET path answers 200 on every running node (the
// registry change log reached it), for at most 60 s.
func (r *runner) onEveryNode(ctx context.Context, what, path string) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range r.nodes {
		apiURL, _ := r.cloud.Endpoints(n)
		if apiURL == "" {
			continue
		}
		c, err := r.api.At(apiURL)
		if err != nil {
			return err
		}
		for {
			err := c.Do(ctx, http.MethodGet, path, nil, nil)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s does not %s: %w", n, what, err)
			}
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// startPlant starts the twin fleet (with its control API on a loopback port
// of the runner) and its directly connected devices against the cloud.
func (r *runner) startPlant(ctx context.Context, dir string, done chan<- error) error {
	top := r.sc.Topology
	fleetCfg, err := twins.DemoConfig(top.Turbines, top.Direct, "127.0.0.1:0")
	if err != nil {
		return err
	}
	fleetCfg.Seed, fleetCfg.Speed = top.Seed, top.Speed
	if top.Speed > 1 {
		// The wind has a daily cycle: an accelerated scenario starts at 10:00 UTC
		// tomorrow, so its plant behaves the same whenever it runs (and its sim
		// time stays ahead of the wall clock, which no-data rules also follow).
		fleetCfg.Start = time.Now().UTC().Truncate(24 * time.Hour).Add(34 * time.Hour)
	}
	if r.fleet, err = twins.New(fleetCfg, r.log.With("component", "twins")); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := httpapi.DefaultConfig().HTTPServer(r.fleet.Handler(), r.log)
	r.serving.Go(func() { _ = srv.Serve(ln) })
	r.serving.Go(func() {
		<-ctx.Done()
		srv.Close()
	})
	if r.twins, err = apiclient.New("http://"+ln.Addr().String(), apiclient.Options{}); err != nil {
		return err
	}

	tokenFile := filepath.Join(dir, "admin.token") // for the edges
	if err := os.WriteFile(tokenFile, []byte(r.cloud.Token()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	cloud := edge.CloudConfig{MQTTAddr: r.mqtt.Addr(), APIURL: r.api.URL(), TokenFile: tokenFile, ReconnectMax: time.Second}
	if r.tls != nil {
		cloud.TLS = &edge.CloudTLS{CAFile: r.caFile}
	}
	r.plant, err = stack.NewPlant(r.fleet, stack.PlantConfig{Cloud: cloud, Secret: direct.APISecrets(r.api),
		DataDir: dir, NoEdges: true}, r.log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	go func() { done <- r.plant.Run(ctx) }()
	return nil
}

// startEdges starts the topology's edges, each gateway's behind a link to
// the MQTT balancer that the timeline can cut.
func (r *runner) startEdges(ctx context.Context) error {
	names := sortedKeys(r.sc.edgeNames())
	udp := map[string]string{}
	for _, name := range names {
		gw := r.sc.edgeNames()[name]
		cfg, err := r.plant.EdgeConfig(gw)
		if err != nil {
			return err
		}
		link, ok := r.links[gw]
		if !ok {
			mqtt := r.mqtt.Addr()
			if link, err = newBalancer(func() []upstream { return []upstream{{Name: "cloud", Addr: mqtt}} }, nil, false); err != nil {
				return err
			}
			r.links[gw] = link
		}
		cfg.Cloud.MQTTAddr = link.Addr()
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
	ed, err := edge.New(e.cfg, r.log.With("component", "edge", "edge", name), edge.WithClock(r.fleet.Clock()))
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
		ev := Event{Step: i, Line: r.sc.StepLine(i), What: st.String(), Sim: r.fleet.Now().Sub(r.t0), Wall: time.Since(r.wall0)}
		err := r.do(ctx, st)
		ev.Took = time.Since(r.wall0) - ev.Wall
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
	fmt.Fprintf(&b, "    now: sim %s, wall %s", r.fleet.Now().Sub(r.t0).Round(time.Second), time.Since(r.wall0).Round(100*time.Millisecond))
	return b.String()
}

// waitFor blocks until the step's sim or wall time.
func (r *runner) waitFor(ctx context.Context, st Step) error {
	for {
		var left time.Duration
		if st.At != nil {
			left = time.Duration(float64(*st.At-r.fleet.Now().Sub(r.t0)) / r.fleet.Clock().Speed())
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
		r.links[st.Cut].Cut()
	case st.Restore != "":
		r.links[st.Restore].Restore()
	case st.Kill != "":
		if _, ok := r.edges[st.Kill]; ok {
			return r.killEdge(st.Kill)
		}
		return r.cloud.Kill(ctx, st.Kill)
	case st.Start != "":
		if _, ok := r.edges[st.Start]; ok {
			return r.startEdge(ctx, st.Start)
		}
		return r.cloud.Revive(ctx, st.Start)
	case st.Pause != "":
		return r.cloud.Pause(ctx, st.Pause)
	case st.Resume != "":
		return r.cloud.Resume(ctx, st.Resume)
	case st.Partition != nil:
		return r.partition(ctx, *st.Partition)
	case st.Heal != "":
		return r.heal(ctx, st.Heal)
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
		return "kill " + st.Kill
	case st.Start != "":
		return "start " + st.Start
	case st.Pause != "":
		return "pause " + st.Pause
	case st.Resume != "":
		return "resume " + st.Resume
	case st.Partition != nil:
		return fmt.Sprintf("partition %s from %s", st.Partition.Node, st.Partition.From)
	case st.Heal != "":
		return "heal " + st.Heal
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

// partition cuts a node off devices or off Kafka through the cloud; a
// cloud that cannot cut it off devices leaves that to the MQTT balancer,
// which drops the node's connections and sends it no new ones.
func (r *runner) partition(ctx context.Context, p PartitionStep) error {
	r.mu.Lock()
	if from, ok := r.partitioned[p.Node]; ok {
		r.mu.Unlock()
		return fmt.Errorf("%s is already cut off %s", p.Node, from)
	}
	r.partitioned[p.Node] = p.From
	r.mu.Unlock()
	err := r.cloud.Partition(ctx, p.Node, p.From)
	if errors.Is(err, ErrUnsupported) && p.From == FromDevices {
		r.mqtt.Down(p.Node)
		return nil
	}
	return err
}

// heal undoes a node's partition.
func (r *runner) heal(ctx context.Context, n string) error {
	r.mu.Lock()
	from, ok := r.partitioned[n]
	delete(r.partitioned, n)
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s is not partitioned", n)
	}
	err := r.cloud.Heal(ctx, n, from)
	if errors.Is(err, ErrUnsupported) && from == FromDevices {
		r.mqtt.Up(n)
		return nil
	}
	return err
}

// fault injects (POST, with a JSON body) or clears (DELETE, with the
// fault and unit as query parameters; none clears them all) a fault
// through the twin control API.
func (r *runner) fault(ctx context.Context, method string, f FaultStep) error {
	path := "/twins/v1/turbines/" + url.PathEscape(f.Turbine) + "/faults"
	body := map[string]any{"fault": f.Fault}
	if f.Gateway != "" {
		path = "/twins/v1/gateways/" + url.PathEscape(f.Gateway) + "/faults"
		if f.Unit != 0 {
			body["unit"] = f.Unit
		}
		if f.Code != 0 {
			body["code"] = f.Code
		}
	}
	if method == http.MethodPost {
		return r.twins.Do(ctx, method, path, body, nil)
	}
	q := url.Values{}
	if f.Fault != "" {
		q.Set("fault", f.Fault)
	}
	if f.Unit != 0 {
		q.Set("unit", strconv.Itoa(f.Unit))
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return r.twins.Do(ctx, method, path, nil, nil)
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

// ready reports whether the node at apiURL answers /readyz with 200 within a second.
func ready(ctx context.Context, client *http.Client, apiURL string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
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
