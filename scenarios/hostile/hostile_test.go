package hostile

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/loadgen"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

// attack is one kind of hostile input. run makes its attempts and returns
// how many it made and how many of them got through (each one a failure);
// counts names the metric series whose increase must cover its attempts:
// every refusal is counted by reason. Attacks that share a series are
// summed.
type attack struct {
	name   string
	counts []string
	run    func(ctx context.Context, e *env, p party) outcome
}

// party is what one attack has of its own: devices (so that one attack's
// bans, takeovers and revocations do not disturb another's) and a loopback
// source address 127.0.0.{host}.
type party struct {
	attacker api.Device // product hostile, org test
	victim   api.Device // product hostile-turbine (has a stop service), org test
	gateway  api.Device // product hostile, org test
	host     int
}

// outcome is what an attack achieved.
type outcome struct {
	attempts int
	through  int      // attempts the platform did not refuse
	notes    []string // how the ones that got through got through
}

// setupFailed is the outcome of an attack that could not be set up: one
// attempt, counted as through (a failure), err its note.
func setupFailed(err error) outcome {
	return outcome{attempts: 1, through: 1, notes: []string{err.Error()}}
}

// result is an attack's outcome with what the node counted for it.
type result struct {
	attack
	outcome
	counted float64
}

// TestHostileClients runs every attack against one node while good devices
// stream, then checks the good devices lost nothing, each attack was
// refused and counted, and the node's goroutines and memory came back.
func TestHostileClients(t *testing.T) {
	cfg := nodetest.Config(t)
	// Tighter pre-login limits than the defaults, so the suite runs in seconds.
	cfg.MQTT.ConnectTimeout = 2 * time.Second
	cfg.MQTT.LoginBackoff.MaxFailuresPerDevice = 20
	cfg.MQTT.LoginBackoff.MaxFailuresPerIP = 25
	h := nodetest.Start(t, cfg)
	e := newEnv(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// A short load first, so that every consumer of the node has its Kafka
	// connections before the goroutines are counted.
	e.startLoad(ctx, "warm-", 3*time.Second, false).wait(t)
	start := e.resources()
	series := map[string]bool{}
	for _, a := range attacks {
		for _, s := range a.counts {
			series[s] = true
		}
	}
	before := map[string]float64{}
	for s := range series {
		before[s] = h.Metric(t, s)
	}

	good := e.startLoad(ctx, "good-", 20*time.Second, true)
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	for i, a := range attacks {
		p := e.party(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := a.run(ctx, e, p)
			mu.Lock()
			results = append(results, result{attack: a, outcome: o})
			mu.Unlock()
		}()
	}
	wg.Wait()
	rep := good.wait(t)

	// Every acknowledged good sample is stored.
	require.True(t, rep.Ledger.Checked, "ledger not checked: %s", rep.Ledger.Error)
	require.Positive(t, rep.Ledger.Acknowledged)
	require.Zero(t, rep.Ledger.Lost(), "good samples lost: %+v", rep.Ledger.Devices)

	// Every attack was refused, and counted: attacks counted under the same
	// series are checked together.
	slices.SortFunc(results, func(a, b result) int { return strings.Compare(a.name, b.name) })
	delta := map[string]float64{}
	for s := range series {
		delta[s] = h.Metric(t, s) - before[s]
	}
	need := map[string]int{}
	for i := range results {
		for _, s := range results[i].counts {
			results[i].counted += delta[s]
		}
		need[strings.Join(results[i].counts, " + ")] += results[i].attempts
	}
	end := e.settle(start)

	report := e.report(results, rep, start, end)
	t.Log("\n" + report)
	if path := os.Getenv("GALE_HOSTILE_REPORT"); path != "" {
		require.NoError(t, os.WriteFile(path, []byte(report), 0o644))
	}
	for _, r := range results {
		require.Positive(t, r.attempts, "%s made no attempt", r.name)
		require.Zero(t, r.through, "%s: %d of %d attempts got through: %v", r.name, r.through, r.attempts, r.notes)
	}
	for _, r := range results {
		if len(r.counts) > 0 {
			group := strings.Join(r.counts, " + ")
			require.GreaterOrEqual(t, r.counted, float64(need[group]), "%s counted %v refusals for %d attempts", group, r.counted, need[group])
		}
	}
	require.LessOrEqual(t, end.goroutines, start.goroutines+goroutineSlack, "goroutines did not come back: %d at start, %d at the end; grown stacks:\n%s",
		start.goroutines, end.goroutines, testkit.GrownGoroutines(start.stacks, end.stacks, 10))
	require.Less(t, end.heap, start.heap+256<<20, "heap did not come back: %d MiB at start, %d MiB at the end", start.heap>>20, end.heap>>20)
}

// env is the node under attack.
type env struct {
	t       testing.TB
	h       *nodetest.Harness
	mqtt    string
	parties []party
	foreign api.Device // a device of another org
}

func newEnv(t testing.TB, h *nodetest.Harness) *env {
	e := &env{t: t, h: h, mqtt: h.MQTTAddr()}
	h.SetupProduct(t, "hostile", "V")
	for _, a := range []api.Asset{{ID: "other", Kind: api.AssetOrg}, {ID: "other-site", Kind: api.AssetSite, Parent: "other"}} {
		require.Contains(t, []int{http.StatusCreated, http.StatusConflict}, h.Do(t, http.MethodPost, "/api/v1/assets", a, nil))
	}
	p := api.Product{Key: "hostile-turbine", Model: api.ThingModel{
		Measurepoints: []api.Measurepoint{{ID: "V", Type: api.TypeFloat}},
		Services:      []api.Service{{ID: "stop"}},
	}}
	require.Equal(t, http.StatusCreated, h.Do(t, http.MethodPost, "/api/v1/products", p, nil))
	for i := range attacks {
		e.parties = append(e.parties, party{
			attacker: h.CreateDevice(t, api.Device{ProductKey: "hostile", DeviceKey: fmt.Sprintf("a%02d-attacker", i), Site: "test-site"}),
			victim:   h.CreateDevice(t, api.Device{ProductKey: "hostile-turbine", DeviceKey: fmt.Sprintf("a%02d-victim", i), Site: "test-site"}),
			gateway:  h.CreateDevice(t, api.Device{ProductKey: "hostile", DeviceKey: fmt.Sprintf("a%02d-gateway", i), Site: "test-site"}),
			host:     10 + i,
		})
	}
	e.foreign = h.CreateDevice(t, api.Device{ProductKey: "hostile", DeviceKey: "foreign", Site: "other-site"})
	return e
}

func (e *env) party(i int) party { return e.parties[i] }

// goodLoad is the good devices' stream.
type goodLoad struct {
	done chan struct{}
	rep  *loadgen.Report
	err  error
}

// startLoad streams 20 good devices (named prefix…) at 400 QoS 1
// messages/s for d, with loadgen's loss ledger when ledger is set, from
// 127.0.0.1 (the attacks come from other loopback addresses, so a ban of
// theirs is not a ban of the good devices).
func (e *env) startLoad(ctx context.Context, prefix string, d time.Duration, ledger bool) *goodLoad {
	cfg := loadgen.DefaultConfig()
	cfg.MQTTAddr, cfg.APIURL, cfg.Token = e.mqtt, e.h.BaseURL, e.h.Token
	cfg.Devices, cfg.Rate, cfg.Duration, cfg.Points = 20, 400, d, 4
	cfg.DevicePrefix, cfg.Product, cfg.Org, cfg.Site = prefix, "good", "test", "test-site"
	cfg.ProbeDevices = 0
	cfg.Replies = true
	cfg.Ledger = ledger
	cfg.SettleTimeout = 20 * time.Second
	g := &goodLoad{done: make(chan struct{})}
	gen, err := loadgen.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	require.NoError(e.t, err)
	go func() {
		defer close(g.done)
		g.rep, g.err = gen.Run(ctx)
	}()
	return g
}

func (g *goodLoad) wait(t testing.TB) *loadgen.Report {
	<-g.done
	require.NoError(t, g.err)
	return g.rep
}

// resources is what the node process holds.
type resources struct {
	goroutines int            // apart from the Kafka client's connection pool
	kafkaConns int            // connections in the Kafka client's pool
	stacks     map[string]int // goroutines by stack, to name what a leak left
	heap       uint64         // bytes in use after a GC
	rss        uint64         // resident set, bytes
}

func (e *env) resources() resources {
	http.DefaultClient.CloseIdleConnections() // the suite's own keep-alive connections are not the node's
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := testkit.RSS() // 0 where it cannot be read
	r := resources{stacks: testkit.Goroutines(), heap: ms.HeapInuse, rss: rss}
	for stack, n := range r.stacks {
		switch {
		case strings.Contains(stack, "kafka-go.(*conn).run"):
			r.kafkaConns += n
		case strings.Contains(stack, "kfake.(*clientConn)"):
		default:
			r.goroutines += n
		}
	}
	return r
}

// settle waits up to 15 s for the goroutines to come back near start's
// count (connections the attacks left are closed by the broker's deadlines
// within seconds) and returns the resources then.
func (e *env) settle(start resources) resources {
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := e.resources()
		if r.goroutines <= start.goroutines+goroutineSlack || time.Now().After(deadline) {
			return r
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// goroutineSlack is how many more goroutines than at the start the node may
// keep after the attacks, not counting the Kafka client's connection pool
// (kafka-go opens a connection per concurrent request and closes the idle ones
// after 30 s, three goroutines each with the embedded Kafka's two ends; the
// attacks that make the node produce concurrently leave 20 to 40 of them). A
// leak per attack connection would be hundreds; a new partition writer or rule group is one.
const goroutineSlack = 20

// report renders the figures as the Markdown table docs/security.md shows.
func (e *env) report(results []result, good *loadgen.Report, start, end resources) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| attack | attempts | got through | refusals counted (with the attacks counted alike) | counted as |\n|---|---|---|---|---|\n")
	total := 0
	for _, r := range results {
		total += r.attempts
		fmt.Fprintf(&b, "| %s | %d | %d | %.0f | %s |\n", r.name, r.attempts, r.through, r.counted, strings.Join(r.counts, ", "))
	}
	fmt.Fprintf(&b, "\n%d attacks, %d attempts. Good devices: %d samples acknowledged, %d stored, %d lost (%d devices, %.0f msgs/s achieved of %.0f offered).\n",
		len(results), total, good.Ledger.Acknowledged, good.Ledger.Stored, good.Ledger.Lost(), good.Devices.Connected, good.Rate.Achieved, good.Rate.Offered)
	fmt.Fprintf(&b, "Goroutines %d → %d (besides the Kafka client's pool: %d → %d connections), heap in use %d → %d MiB, RSS %d → %d MiB (start → end, after the attacks' connections closed).\n",
		start.goroutines, end.goroutines, start.kafkaConns, end.kafkaConns, start.heap>>20, end.heap>>20, start.rss>>20, end.rss>>20)
	return b.String()
}
