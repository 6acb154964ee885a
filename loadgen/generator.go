package loadgen

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gale-iot/gale/platform/pki"
)

// Generator runs one load test: New, then Run.
type Generator struct {
	cfg       Config
	log       *slog.Logger
	progressW io.Writer
	ids       []Identity // from the devices file (read by New), or those Run provisioned
	brokerURL string
	tls       *tls.Config
	platform  *Platform // nil in plain mode

	rec      *recorder
	inflight atomic.Int64 // messages awaiting acknowledgement, all connections
	ledger   *ledger      // nil in plain mode
	prober   *prober      // nil without probes
	devs     []*device
	prog     *progress
}

// New checks cfg (reading its devices file, whose length is the device
// count when cfg.Devices is 0) and returns a generator. The live progress
// line goes to progress; nil turns it off.
func New(cfg Config, log *slog.Logger, progress io.Writer) (*Generator, error) {
	g := &Generator{log: log, progressW: progress}
	if (cfg.Identities != nil || cfg.DevicesFile != "") && !cfg.Plain {
		ids := cfg.Identities
		if ids == nil {
			var err error
			if ids, err = ReadIdentities(cfg.DevicesFile); err != nil {
				return nil, err
			}
		}
		if cfg.Devices == 0 {
			cfg.Devices = len(ids)
		}
		if cfg.Devices > len(ids) {
			return nil, fmt.Errorf("%w: %d devices wanted, %s lists %d", ErrConfig, cfg.Devices, cmp.Or(cfg.DevicesFile, "Identities"), len(ids))
		}
		g.ids = ids[:cfg.Devices]
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g.cfg = cfg
	g.brokerURL = "tcp://" + cfg.MQTTAddr
	cfg.TLS = cfg.TLS || cfg.TLSCAFile != "" || cfg.TLSCertFile != ""
	if cfg.TLS {
		host, _, _ := net.SplitHostPort(cfg.MQTTAddr)
		cc := pki.ClientConfig{CAFile: cfg.TLSCAFile, ServerName: host}
		if !perDeviceCert(cfg.TLSCertFile) {
			cc.CertFile, cc.KeyFile = cfg.TLSCertFile, cfg.TLSKeyFile
		}
		var err error
		if g.tls, err = cc.Load(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		g.tls.InsecureSkipVerify = cfg.TLSInsecure //nolint:gosec // asked for
		g.brokerURL = "tls://" + cfg.MQTTAddr
	}
	g.cfg = cfg
	if !cfg.Plain {
		var err error
		if g.platform, err = g.newPlatform(cfg.APIURL); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// newPlatform is a client of the API at apiURL, trusting the run's CA.
func (g *Generator) newPlatform(apiURL string) (*Platform, error) {
	var tlsCfg *tls.Config
	if g.cfg.TLSCAFile != "" || g.cfg.TLSInsecure {
		var err error
		if tlsCfg, err = (pki.ClientConfig{CAFile: g.cfg.TLSCAFile}).Load(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		tlsCfg.InsecureSkipVerify = g.cfg.TLSInsecure //nolint:gosec // asked for
	}
	p, err := NewPlatform(apiURL, g.cfg.Token, tlsCfg, g.log)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return p, nil
}

// perDeviceCert reports whether a certificate path names each device's own
// file through {pk} and {dk} placeholders.
func perDeviceCert(path string) bool {
	return strings.Contains(path, "{pk}") || strings.Contains(path, "{dk}")
}

// deviceTLS is the TLS config of device id: the run's, with the device's
// own certificate when the certificate path has placeholders.
func (g *Generator) deviceTLS(id Identity) (*tls.Config, error) {
	if g.tls == nil || !perDeviceCert(g.cfg.TLSCertFile) {
		return g.tls, nil
	}
	r := strings.NewReplacer("{pk}", id.ProductKey, "{dk}", id.DeviceKey)
	cert, err := tls.LoadX509KeyPair(r.Replace(g.cfg.TLSCertFile), r.Replace(g.cfg.TLSKeyFile))
	if err != nil {
		return nil, fmt.Errorf("client certificate of %s: %w", id.Name(), err)
	}
	c := g.tls.Clone()
	c.Certificates = []tls.Certificate{cert}
	return c, nil
}

// Run runs the load test and returns its report; with ComparePlain set it
// then runs the same profile against that plain broker and adds the
// comparison. An interrupted run (ctx cancelled) still returns a report,
// marked Interrupted; errors are for runs that could not take place.
func (g *Generator) Run(ctx context.Context) (*Report, error) {
	rep, err := g.run(ctx)
	if err != nil || g.cfg.ComparePlain == "" || rep.Interrupted {
		return rep, err
	}
	pc := g.cfg
	pc.Plain, pc.MQTTAddr, pc.ComparePlain, pc.DevicesFile, pc.Replies = true, g.cfg.ComparePlain, "", "", false
	pg, err := New(pc, g.log.With("run", "plain"), g.progressW)
	if err != nil {
		return rep, err
	}
	g.log.Info("running the same profile against the plain broker", "addr", pc.MQTTAddr)
	base, err := pg.run(ctx)
	if err != nil {
		return rep, fmt.Errorf("plain broker run: %w", err)
	}
	rep.compare(base)
	return rep, nil
}

func (g *Generator) run(ctx context.Context) (*Report, error) {
	cfg := g.cfg
	started := time.Now()
	user0, sys0 := cpuTime()
	g.rec = newRecorder(started, 0, 0)
	if g.progressW != nil {
		g.prog = newProgress(g.progressW, cfg.ProgressInterval, g)
		pctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { g.prog.run(pctx); close(done) }()
		defer func() { stop(); <-done }()
	}
	g.phase("provisioning")
	ids, err := g.identities(ctx)
	if err != nil {
		return nil, err
	}
	g.ids = ids
	if !cfg.Plain {
		g.ledger = newLedger(len(ids), started)
		if n := min(cfg.ProbeDevices, len(ids)); n > 0 {
			g.prober = newProber(g.platform.api.Prom, g.rec, ids[:n], cfg.ProbeInterval, g.log)
		}
	}
	g.devs = make([]*device, len(ids))
	for i, id := range ids {
		g.devs[i] = newDevice(g, i, id)
		if g.prober != nil && i < cfg.ProbeDevices {
			g.devs[i].probe = i
		}
	}
	closed := false
	closeAll := func() {
		if !closed {
			closed = true
			g.closeDevices()
		}
	}
	defer closeAll()

	g.phase("connecting")
	connected, firstErr := g.connectAll(ctx)
	if connected == 0 {
		return nil, fmt.Errorf("no device could connect to %s: %w", cfg.MQTTAddr, firstErr)
	}
	g.log.Info("devices connected", "connected", connected, "devices", len(ids))

	start := time.Now()
	pctx, stopProber := context.WithCancel(context.Background())
	proberDone := make(chan struct{})
	if g.prober != nil {
		go func() { g.prober.run(pctx); close(proberDone) }()
	} else {
		close(proberDone)
	}
	defer func() { stopProber(); <-proberDone }()

	g.phase("running")
	var steps []StepReport
	var best float64
	if cfg.Step.Enabled {
		steps, best = g.stepSearch(ctx, start)
	} else {
		g.timetable(ctx, start)
	}
	g.phase("draining")
	g.drain(ctx)
	closeAll()
	interrupted := ctx.Err() != nil

	rep := &Report{Target: "gale", MQTTAddr: cfg.MQTTAddr, Started: started, Interrupted: interrupted, Steps: steps, MaxSustainedRate: best}
	if cfg.Plain {
		rep.Target = "plain"
	}
	switch {
	case g.ledger == nil:
	case interrupted:
		rep.Ledger.Error = "interrupted"
	case !cfg.Ledger:
		rep.Ledger.Error = "disabled"
	default:
		g.phase("checking loss")
		rep.Ledger = g.ledger.check(ctx, g.platform.api.Prom, ids, cfg.SettleTimeout, g.log)
	}
	if g.prober != nil && !interrupted {
		g.phase("settling")
		deadline := time.Now().Add(cfg.SettleTimeout)
		for g.prober.outstanding() > 0 && time.Now().Before(deadline) && sleepUntil(ctx, time.Now().Add(cfg.ProbeInterval)) {
		}
	}
	stopProber()
	<-proberDone
	rep.Interrupted = rep.Interrupted || ctx.Err() != nil
	if g.prober != nil {
		rep.E2EUnseen = g.prober.outstanding()
	}

	user1, sys1 := cpuTime()
	rep.Finished = time.Now()
	wall := rep.Finished.Sub(started).Seconds()
	rep.CPU = CPUReport{UserS: (user1 - user0).Seconds(), SystemS: (sys1 - sys0).Seconds(), WallS: wall}
	rep.CPU.Cores = (rep.CPU.UserS + rep.CPU.SystemS) / wall
	g.fill(rep, connected)
	return rep, nil
}

// CheckLedger checks the run's loss ledger again, through the query API at
// apiURL (with the run's token): a cluster's other store nodes each keep a
// full copy, and each must hold every acknowledged sample. Call it after Run.
func (g *Generator) CheckLedger(ctx context.Context, apiURL string) LedgerReport {
	if g.ledger == nil {
		return LedgerReport{Error: "no ledger: the run did not take place, or ran in plain mode"}
	}
	p, err := g.newPlatform(apiURL)
	if err != nil {
		return LedgerReport{Error: err.Error()}
	}
	return g.ledger.check(ctx, p.api.Prom, g.ids, g.cfg.SettleTimeout, g.log)
}

// fill copies the recorder's figures and the profile into rep.
func (g *Generator) fill(rep *Report, connected int) {
	cfg := g.cfg
	s := g.rec.snapshot()
	rep.Profile = ProfileReport{
		Devices: cfg.Devices, Rate: cfg.TotalRate(), RatePerDevice: cfg.RatePerDevice(), QoS: cfg.QoS, Points: cfg.Points,
		Payload: cfg.Profile, RampUp: cfg.RampUp.String(), Duration: cfg.Duration.String(), RampDown: cfg.RampDown.String(),
		Count: cfg.Count, MaxInflight: cfg.MaxInflight, TLS: cfg.TLS,
	}
	if cfg.Step.Enabled {
		rep.Profile.Duration = fmt.Sprintf("steps of %s", cfg.Step.Duration)
	}
	rep.Devices.Requested, rep.Devices.Connected = cfg.Devices, connected
	rep.Messages.Offered, rep.Messages.Sent, rep.Messages.Acknowledged, rep.Messages.Failed = s.offered, s.sent, s.acked, s.failed
	rep.Rate = RateReport{Offered: s.offeredRate, Achieved: s.achievedRate, Ratio: ratio(s.achievedRate, s.offeredRate),
		Datapoints: s.achievedRate * float64(cfg.Points+1), WindowS: s.windowS}
	rep.Latency, rep.Errors, rep.Timeline = s.latency, s.errors, s.timeline
}

func (g *Generator) phase(p string) {
	if g.prog != nil {
		g.prog.setPhase(p)
	}
}

// deviceKey names the i-th created device.
func deviceKey(cfg Config, i int) string {
	width := max(5, len(strconv.Itoa(cfg.Devices-1)))
	return fmt.Sprintf("%s%0*d", cfg.DevicePrefix, width, i)
}

// identities returns the devices: from the devices file, made up (plain
// mode), or provisioned through the API.
func (g *Generator) identities(ctx context.Context) ([]Identity, error) {
	switch {
	case g.ids != nil:
		return g.ids, nil
	case g.cfg.Plain:
		ids := make([]Identity, g.cfg.Devices)
		for i := range ids {
			ids[i] = Identity{ProductKey: g.cfg.Product, DeviceKey: deviceKey(g.cfg, i)}
		}
		return ids, nil
	}
	return g.platform.Provision(ctx, g.cfg)
}

// connectAll opens the connections at the connect rate and returns how many came up.
func (g *Generator) connectAll(ctx context.Context) (int, error) {
	start := time.Now()
	every := time.Duration(float64(time.Second) / g.cfg.ConnectRate)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		n        int
		firstErr error
	)
	for i, d := range g.devs {
		if !sleepUntil(ctx, start.Add(time.Duration(i)*every)) {
			break
		}
		wg.Go(func() {
			err := d.connect(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				n++
			} else if firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		g.log.Warn("some devices did not connect; they retry once a second while the run lasts", "connected", n, "devices", len(g.devs), "first_error", firstErr)
	}
	if n == 0 && firstErr == nil {
		firstErr = ctx.Err()
	}
	return n, firstErr
}

// shifts returns each device's timetable offset: even over one interval,
// or random in [0, StartJitter).
func (g *Generator) shifts(ratePerDevice float64) []time.Duration {
	out := make([]time.Duration, len(g.devs))
	if j := g.cfg.StartJitter; j > 0 {
		rng := rand.New(rand.NewPCG(uint64(g.cfg.Seed), 0x5eed))
		for i := range out {
			out[i] = time.Duration(rng.Int64N(int64(j)))
		}
		return out
	}
	interval := float64(time.Second) / ratePerDevice
	for i := range out {
		out[i] = time.Duration(interval * float64(i) / float64(len(out)))
	}
	return out
}

// timetable runs the configured phases. The rates are counted over the
// steady phase once every device has started (its first interval or
// jitter excluded), or over the whole run when that is empty.
func (g *Generator) timetable(ctx context.Context, start time.Time) {
	cfg := g.cfg
	r := cfg.RatePerDevice()
	sched := Schedule{Rate: r, RampUp: cfg.RampUp, Steady: cfg.Duration, RampDown: cfg.RampDown, Unbounded: cfg.Duration == 0}
	shifts := g.shifts(r)
	lead := slices.Max(shifts)
	steady := cfg.Duration
	if steady == 0 { // ends by count
		steady = seconds(float64(cfg.Count)/r) - cfg.RampUp/2
	}
	from, to := cfg.RampUp+lead, cfg.RampUp+steady
	if to <= from {
		from, to = 0, cfg.RampUp+steady+cfg.RampDown+lead
	}
	g.rec.begin(start, from, to)
	g.senders(ctx, sched, start, shifts, []*recorder{g.rec})
}

// senders runs every device's timetable and waits for them.
func (g *Generator) senders(ctx context.Context, sched Schedule, start time.Time, shifts []time.Duration, recs []*recorder) {
	var wg sync.WaitGroup
	for i, d := range g.devs {
		wg.Go(func() { d.run(ctx, sched, start, shifts[i], recs) })
	}
	wg.Wait()
}

// stepSearch runs steps of rising rate until one fails, and returns them
// with the highest achieved rate of a passing step.
func (g *Generator) stepSearch(ctx context.Context, start time.Time) ([]StepReport, float64) {
	s := g.cfg.Step
	g.rec.begin(start, 0, 0)
	var steps []StepReport
	rate := g.cfg.TotalRate()
	for range s.MaxSteps {
		r := rate / float64(len(g.devs))
		if r > 1000 || ctx.Err() != nil {
			break
		}
		g.phase(fmt.Sprintf("step %.0f/s", rate))
		shifts := g.shifts(r)
		from, to := slices.Max(shifts), s.Duration
		if to <= from {
			from = 0
		}
		stepStart := time.Now()
		rec := newRecorder(stepStart, 0, 0)
		rec.begin(stepStart, from, to)
		g.senders(ctx, Schedule{Rate: r, Steady: s.Duration}, stepStart, shifts, []*recorder{g.rec, rec})
		g.drain(ctx)
		st := stepReport(rec.snapshot(), s, g.cfg.QoS == 1)
		steps = append(steps, st)
		g.log.Info("step done", "offered", st.Offered, "achieved", st.Achieved, "puback_p99_ms", st.PubackP99, "errors", st.Errors, "pass", st.Pass, "why", st.Why)
		if g.progressW != nil {
			fmt.Fprintln(g.progressW, stepLine(len(steps), st, bestRate(steps)))
		}
		if !continueSearch(steps) || ctx.Err() != nil {
			break
		}
		rate *= s.Factor
	}
	return steps, bestRate(steps)
}

// stepLine is the progress line of step n (from 1) of a search.
func stepLine(n int, st StepReport, best float64) string {
	verdict := "pass"
	if !st.Pass {
		verdict = "FAIL (" + st.Why + ")"
	}
	return fmt.Sprintf("step %2d: offered %7.0f/s achieved %7.0f/s (%5.1f%%) PUBACK p50 %7.1fms p99 %7.1fms errors %d: %s; best so far %.0f/s",
		n, st.Offered, st.Achieved, 100*ratio(st.Achieved, st.Offered), st.PubackP50, st.PubackP99, st.Errors, verdict, best)
}

// continueSearch reports whether a search that measured steps goes on: until its first failing step.
func continueSearch(steps []StepReport) bool {
	return len(steps) == 0 || steps[len(steps)-1].Pass
}

// bestRate is a search's result: the highest achieved rate among the
// passing steps before the first failing one (a step that passes after a
// failure, by luck of a quieter moment, does not count).
func bestRate(steps []StepReport) float64 {
	best := 0.0
	for _, st := range steps {
		if !st.Pass {
			break
		}
		best = max(best, st.Achieved)
	}
	return best
}

func stepReport(s snapshot, cfg StepConfig, qos1 bool) StepReport {
	st := StepReport{Offered: s.offeredRate, Achieved: s.achievedRate}
	if l, ok := s.latency["puback"]; ok {
		st.PubackP50, st.PubackP99 = l.P50, l.P99
	}
	for _, n := range s.errors {
		st.Errors += n
	}
	return judgeStep(st, cfg, qos1)
}

// judgeStep decides whether measured step st passes: no errors, at least
// cfg.MinRatio of its offered rate achieved and (QoS 1) PUBACK p99 within cfg.MaxP99.
func judgeStep(st StepReport, cfg StepConfig, qos1 bool) StepReport {
	st.Pass, st.Why = true, ""
	switch {
	case st.Errors > 0:
		st.Pass, st.Why = false, fmt.Sprintf("%d errors", st.Errors)
	case st.Achieved < cfg.MinRatio*st.Offered:
		st.Pass, st.Why = false, fmt.Sprintf("achieved %.1f%% of offered, below %.0f%%", 100*ratio(st.Achieved, st.Offered), 100*cfg.MinRatio)
	case qos1 && st.PubackP99 > float64(cfg.MaxP99)/float64(time.Millisecond):
		st.Pass, st.Why = false, fmt.Sprintf("PUBACK p99 %.1fms above %s", st.PubackP99, cfg.MaxP99)
	}
	return st
}

// drain waits for the in-flight messages, at most one publish timeout.
func (g *Generator) drain(ctx context.Context) {
	deadline := time.Now().Add(g.cfg.PublishTimeout + time.Second)
	for g.inflight.Load() > 0 && time.Now().Before(deadline) && sleepUntil(ctx, time.Now().Add(10*time.Millisecond)) {
	}
}

// closeDevices disconnects every device, failing what is still in flight.
func (g *Generator) closeDevices() {
	var wg sync.WaitGroup
	for _, d := range g.devs {
		wg.Go(d.close)
	}
	wg.Wait()
}
