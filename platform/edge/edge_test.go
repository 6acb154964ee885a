package edge_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/platform/edge"
	"github.com/gale-iot/gale/twins/clock"
	"github.com/gale-iot/gale/twins/modbus"
	"github.com/gale-iot/gale/twins/turbine"
)

// TestOutageIsReplayedThroughResume cuts the cloud off for 10 minutes of
// simulated time: every sample polled meanwhile reaches the TSDB once the
// cloud is back, through measurepoint/resume (backfill, which no rule sees).
func TestOutageIsReplayedThroughResume(t *testing.T) {
	clk := clock.NewManual(time.Now().Truncate(time.Second))
	c := startCloud(t)
	f := startFleet(t, clk)
	e, s := steppedEdge(t, clk, c, f)

	s.step(20)
	waitMetric(t, e, "gale_edge_queue_depth", nil, equal(0), "live samples not sent")
	live := metric(t, e, "gale_edge_samples_total", nil)
	post, resume := map[string]string{"path": "post"}, map[string]string{"path": "resume"}
	posted, resumed := metric(t, e, "gale_edge_published_samples_total", post), metric(t, e, "gale_edge_published_samples_total", resume)
	require.Equal(t, live, posted+resumed, "the first poll, made before the login, went through resume")

	c.proxy.Cut()
	waitMetric(t, e, "gale_edge_uplink_connected", nil, equal(0), "edge did not notice the cut")
	cutAt := clk.Now()
	s.step(600)
	restoreAt := clk.Now()
	outage := metric(t, e, "gale_edge_samples_total", nil) - live
	require.Equal(t, float64(600*3+60*2), outage, "every unit polled at every tick")
	require.Equal(t, outage, metric(t, e, "gale_edge_queue_depth", nil), "all queued")
	resumesBefore := c.h.Metric(t, `gale_broker_messages_total{kind="resume"}`)

	c.proxy.Restore()
	waitMetric(t, e, "gale_edge_uplink_connected", nil, equal(1), "edge did not log in again")
	reconnected := time.Now()
	waitMetric(t, e, "gale_edge_queue_depth", nil, equal(0), "queue not replayed")
	replayTook := time.Since(reconnected)
	require.Equal(t, outage, metric(t, e, "gale_edge_published_samples_total", resume)-resumed)
	require.Equal(t, posted, metric(t, e, "gale_edge_published_samples_total", post), "no sample of the outage went through post")
	resumes := c.h.Metric(t, `gale_broker_messages_total{kind="resume"}`) - resumesBefore
	require.GreaterOrEqual(t, resumes, math.Ceil(outage/100), "resume batches carry at most 100 samples")
	require.Less(t, resumes, outage/50, "the backlog went in batches, not one by one")

	want := func(every time.Duration) []int64 {
		var ts []int64
		for at := cutAt.Add(every); !at.After(restoreAt); at = at.Add(every) {
			ts = append(ts, at.UnixMilli())
		}
		return ts
	}
	times := func(pts []point) []int64 {
		var ts []int64
		for _, p := range pts {
			if p.T > cutAt.UnixMilli() {
				ts = append(ts, p.T)
			}
		}
		return ts
	}
	for _, q := range []struct{ expr, point string }{
		{`WTUR_W{device="WT01"}[15m]`, "WTUR.W"},
		{`WROT_RotSpd{device="WT02"}[15m]`, "WROT.RotSpd"},
		{`WMET_HorWdSpd{device="MM01"}[15m]`, "WMET.HorWdSpd"},
	} {
		// The PUBACKs came once Kafka had the samples; the TSDB writer may be a little behind.
		var got []int64
		require.Eventually(t, func() bool {
			got = times(series(t, c.h, q.expr, restoreAt)[q.point])
			return len(got) >= len(want(time.Second))
		}, 20*time.Second, 50*time.Millisecond, "outage samples of %s not in the TSDB: %d", q.expr, len(got))
		require.Equal(t, want(time.Second), got, "every second of the outage: %s", q.expr)
	}
	require.Len(t, times(series(t, c.h, `WTRM_TrmTmpGbxOil{device="WT02"}[15m]`, restoreAt)["WTRM.TrmTmpGbxOil"]), 60, "the slow group every 10 s")
	// The gateway reported its queue depth and slowest poll while it was connected, and reports them again after the outage.
	s.step(5)
	require.Eventually(t, func() bool {
		return len(series(t, c.h, `GW_QueueDepth{device="GW01"}[15m]`, clk.Now())["GW.QueueDepth"]) >= 2
	}, 20*time.Second, 50*time.Millisecond, "the gateway's queue depth is not in the TSDB")
	require.Eventually(t, func() bool {
		lat := series(t, c.h, `GW_PollLatency{device="GW01"}[15m]`, clk.Now())["GW.PollLatency"]
		return len(lat) >= 2 && lat[len(lat)-1].V > 0
	}, 20*time.Second, 50*time.Millisecond, "the gateway's slowest poll is not in the TSDB")
	t.Logf("outage of %v (sim): %.0f samples queued, replayed in %.0f resume messages in %v (%.0f samples/s)",
		restoreAt.Sub(cutAt), outage, resumes, replayTook.Round(time.Millisecond), outage/replayTook.Seconds())
}

// TestKillDuringOutageLosesNothing kills -9 an edge process that is
// buffering an outage and starts it again: everything it had queued
// reaches the TSDB once the cloud is back.
func TestKillDuringOutageLosesNothing(t *testing.T) {
	c := startCloud(t)
	f := startFleet(t, nil)
	dir := t.TempDir()
	cfg := edgeConfig(t, c, f, filepath.Join(dir, "data"))
	cfg.HTTPAddr = testkit.FreeAddr(t, "tcp")
	b, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(dir, "edge.yaml")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	scrapeChild := func(series string) float64 {
		resp, err := http.Get("http://" + cfg.HTTPAddr + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		v, _ := testkit.ScrapeText(t, resp.Body, series)
		return v
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("edge process log:\n%s", stderr.String())
			}
		})
		return cmd
	}

	child := start()
	require.Eventually(t, func() bool { return scrapeChild("gale_edge_uplink_connected") == 1 }, 20*time.Second, 20*time.Millisecond)
	c.proxy.Cut()
	require.Eventually(t, func() bool { return scrapeChild("gale_edge_queue_depth") >= 12 }, 20*time.Second, 20*time.Millisecond)
	require.NoError(t, child.Process.Signal(os.Kill))
	require.Error(t, child.Wait(), "killed")

	q, err := edge.OpenQueue(filepath.Join(cfg.DataDir, "queue.db"), cfg.Queue.MaxBytes, false)
	require.NoError(t, err)
	queued, err := q.Items(0, math.MaxInt64, 100000)
	require.NoError(t, err)
	require.NoError(t, q.Close())
	require.GreaterOrEqual(t, len(queued), 12)

	start()
	require.Eventually(t, func() bool { return scrapeChild("gale_edge_queue_depth") >= float64(len(queued)+6) }, 20*time.Second, 20*time.Millisecond,
		"the restarted edge keeps what was queued and queues more")
	resp, err := http.Get("http://" + cfg.HTTPAddr + "/healthz")
	require.NoError(t, err)
	var health struct{ Active, Connected bool }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&health))
	resp.Body.Close()
	require.Equal(t, struct{ Active, Connected bool }{true, false}, health)
	c.proxy.Restore()
	require.Eventually(t, func() bool { return scrapeChild("gale_edge_queue_depth") == 0 }, 20*time.Second, 20*time.Millisecond)
	require.Positive(t, scrapeChild(`gale_edge_published_samples_total{path="resume"}`))

	// Every sample queued when the edge was killed is in the TSDB.
	want := map[string]map[string][]int64{} // device → point → times
	for _, it := range queued {
		var p api.MeasurepointParams
		require.NoError(t, json.Unmarshal(it.Params, &p))
		for id := range p.Measurepoints {
			if want[it.DeviceKey] == nil {
				want[it.DeviceKey] = map[string][]int64{}
			}
			want[it.DeviceKey][id] = append(want[it.DeviceKey][id], it.Time)
		}
	}
	now := time.Now()
	missing := 0
	require.Eventually(t, func() bool {
		missing = 0
		for dk, points := range want {
			got := series(t, c.h, fmt.Sprintf(`{device=%q}[5m]`, dk), now)
			for id, ts := range points {
				for _, at := range ts {
					if !slices.ContainsFunc(got[id], func(p point) bool { return p.T == at }) {
						missing++
					}
				}
			}
		}
		return missing == 0
	}, 20*time.Second, 100*time.Millisecond, "samples lost")
	t.Logf("killed with %d samples queued; all of them in the TSDB after the restart", len(queued))
}

// TestStandbyTakesOver stops the active edge of an HA pair: the standby
// publishes within 5 s, and a restarted edge rejoins as standby.
func TestStandbyTakesOver(t *testing.T) {
	c := startCloud(t)
	f := startFleet(t, nil)
	udpA, udpB := testkit.FreeAddr(t, "udp"), testkit.FreeAddr(t, "udp")
	cfgA := edgeConfig(t, c, f, t.TempDir())
	cfgA.HA = &edge.HAConfig{Node: "a", Listen: udpA, Peer: udpB}
	cfgB := edgeConfig(t, c, f, t.TempDir())
	cfgB.HA = &edge.HAConfig{Node: "b", Listen: udpB, Peer: udpA}
	a, stopA := runEdge(t, cfgA)
	b, _ := runEdge(t, cfgB)
	post := map[string]string{"path": "post"}
	waitMetric(t, a, "gale_edge_published_samples_total", post, atLeast(9), "a does not publish")
	require.Equal(t, 1.0, metric(t, a, "gale_edge_active", nil))
	require.Equal(t, 0.0, metric(t, b, "gale_edge_active", nil), "b is standby")
	require.Zero(t, metric(t, b, "gale_edge_polls_total", nil), "a standby does not poll")

	stopA()
	killed := time.Now()
	waitMetric(t, b, "gale_edge_published_samples_total", nil, atLeast(1), "b did not take over")
	tookOver := time.Since(killed)
	require.Less(t, tookOver, 5*time.Second)

	// Restarted, a hears the active b and stays standby.
	a2, _ := runEdge(t, cfgA)
	waitMetric(t, b, "gale_edge_published_samples_total", post, atLeast(9), "b stopped publishing")
	require.Equal(t, 0.0, metric(t, a2, "gale_edge_active", nil), "no failback")
	require.Equal(t, 1.0, metric(t, b, "gale_edge_active", nil))

	var ts []int64
	require.Eventually(t, func() bool {
		ts = nil
		for _, p := range series(t, c.h, `WTUR_W{device="WT01"}[1m]`, time.Now())["WTUR.W"] {
			ts = append(ts, p.T)
		}
		return len(ts) > 0 && ts[len(ts)-1] > killed.UnixMilli()
	}, 10*time.Second, 50*time.Millisecond)
	var gap int64
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i]-ts[i-1])
	}
	t.Logf("standby's first sample acknowledged %v after the active stopped; largest gap in WT01's 1 s series %d ms (%d samples missing)",
		tookOver.Round(time.Millisecond), gap, gap/1000-1)
	require.Less(t, gap, int64(5000))
}

// TestServiceCallCurtailsTurbine sends setPowerLimit to WT01 through the
// cloud: the edge writes WTUR.DmdW over Modbus, the turbine curtails, and
// the reply carries success; a refused write carries the Modbus exception.
func TestServiceCallCurtailsTurbine(t *testing.T) {
	clk := clock.NewManual(time.Now().Truncate(time.Second))
	c := startCloud(t)
	f := startFleet(t, clk)
	e, s := steppedEdge(t, clk, c, f)
	s.step(60)
	wt, _ := f.Turbine("WT01")
	require.Greater(t, wt.Points()[turbine.PointW], 3000.0, "a strong wind to curtail")

	call := func(id, service, params string) api.Reply {
		t.Helper()
		topic := api.ServiceTopic("wind-turbine", "WT01", service)
		var r api.Reply
		var sent time.Time
		// The call is published again until answered: the edge may not have
		// subscribed to its sub-devices' topics yet (a real command waits for that).
		require.Eventually(t, func() bool {
			for _, m := range c.proxy.Published(api.ReplyTopic(topic)) {
				if json.Unmarshal(m.Payload, &r) == nil && r.ID == id {
					return true
				}
			}
			if time.Since(sent) > time.Second {
				require.NoError(t, c.h.Node.Publish(topic, fmt.Appendf(nil, `{"id":%q,"method":"thing.service.%s","params":%s}`, id, service, params)))
				sent = time.Now()
			}
			return false
		}, 30*time.Second, 5*time.Millisecond, "no reply to %s", service)
		return r
	}

	r := call("1", "setPowerLimit", `{"limit":1500}`)
	require.Equal(t, api.CodeOK, r.Code, r.Message)
	require.Equal(t, map[string]any{"limit": 1500.0}, r.Data)
	s.step(60)
	p := wt.Points()
	require.Equal(t, 1500.0, p[turbine.PointDmdW])
	require.LessOrEqual(t, p[turbine.PointW], 1500*1.02, "power drops to the setpoint")
	require.Eventually(t, func() bool {
		dmd := series(t, c.h, `WTUR_DmdW{device="WT01"}[5s]`, clk.Now())["WTUR.DmdW"]
		return len(dmd) > 0 && dmd[len(dmd)-1].V == 1500
	}, 10*time.Second, 20*time.Millisecond, "the new setpoint is polled back")

	r = call("2", "setPowerLimit", `{"limit":6000}`)
	require.Equal(t, api.CodeInvalidValue, r.Code, "above rated: the turbine refuses")
	require.Contains(t, r.Message, "modbus exception 03")
	require.Equal(t, map[string]any{"exception": 3.0}, r.Data)

	g, _ := f.Gateway("GW01")
	require.NoError(t, g.Inject(modbus.Fault{Kind: modbus.FaultException, Code: 4, Unit: 1}))
	r = call("3", "stop", `{}`)
	require.Equal(t, api.CodeInternal, r.Code)
	require.Contains(t, r.Message, "modbus exception 04")
	require.NoError(t, g.Clear("", 0))
	r = call("4", "stop", `{}`)
	require.Equal(t, api.CodeOK, r.Code, r.Message)
	s.step(5)
	require.Equal(t, turbine.StateStopped, wt.State())

	r = call("5", "selfDestruct", `{}`)
	require.Equal(t, api.CodeNotImplemented, r.Code)
	require.GreaterOrEqual(t, metric(t, e, "gale_edge_service_calls_total", map[string]string{"code": "200"}), 2.0, "a call published again may be answered twice")
}

// TestModbusFaultIsIsolated injects gateway faults on WT02 (unit 2): they
// show as error counters and bad-quality samples of WT02 while WT01 and
// MM01 keep being polled with good quality.
func TestModbusFaultIsIsolated(t *testing.T) {
	c := startCloud(t)
	for i, fault := range []struct {
		fault modbus.Fault
		kind  string
	}{
		{modbus.Fault{Kind: modbus.FaultException, Code: 4, Unit: 2}, "exception"},
		{modbus.Fault{Kind: modbus.FaultStale, Unit: 2}, "stale"},
		{modbus.Fault{Kind: modbus.FaultTimeout, Unit: 2}, "timeout"},
	} {
		t.Run(fault.kind, func(t *testing.T) {
			// Each case has its own stretch of the past, so their samples do not collide in the TSDB.
			clk := clock.NewManual(time.Now().Truncate(time.Second).Add(-time.Duration(30-10*i) * time.Minute))
			f := startFleet(t, clk)
			e, s := steppedEdge(t, clk, c, f)
			s.step(10)
			g, _ := f.Gateway("GW01")
			require.NoError(t, g.Inject(fault.fault))
			before := map[string]float64{}
			for _, dk := range []string{"WT01", "MM01"} {
				before[dk] = metric(t, e, "gale_edge_samples_total", map[string]string{"device": dk})
			}
			s.step(20)
			require.Positive(t, metric(t, e, "gale_edge_poll_errors_total", map[string]string{"device": "WT02", "kind": fault.kind}))
			for _, dk := range []string{"WT01", "MM01"} {
				require.GreaterOrEqual(t, metric(t, e, "gale_edge_samples_total", map[string]string{"device": dk})-before[dk], 20.0, "%s keeps being polled", dk)
				require.Zero(t, metric(t, e, "gale_edge_poll_errors_total", map[string]string{"device": dk}), "%s has no errors", dk)
			}
			waitMetric(t, e, "gale_edge_queue_depth", nil, equal(0), "not all posted")
			wt02 := c.latest(t, "wind-turbine", "WT02", "WTUR.W").Measurepoints
			require.Equal(t, "1", qualityOf(t, wt02["WTUR.W"]), "WT02's power is flagged bad")
			require.NotContains(t, wt02, "WTUR.TurSt", "a point without quality in the model is left out while bad")
			require.Equal(t, "null", qualityOf(t, c.latest(t, "wind-turbine", "WT01", "WTUR.W").Measurepoints["WTUR.W"]), "WT01's is not flagged")
			require.Eventually(t, func() bool {
				q := series(t, c.h, `WTUR_W_quality{device="WT02"}[5s]`, clk.Now())["WTUR_W_quality"]
				return len(q) > 0 && q[len(q)-1].V == api.QualityBad
			}, 10*time.Second, 20*time.Millisecond, "the quality flag is in the TSDB")

			require.NoError(t, g.Clear("", 0))
			s.step(35) // past the longest back-off after timeouts
			waitMetric(t, e, "gale_edge_queue_depth", nil, equal(0), "not all posted")
			require.Equal(t, "null", qualityOf(t, c.latest(t, "wind-turbine", "WT02", "WTUR.W").Measurepoints["WTUR.W"]), "WT02 recovers")
		})
	}
}

// TestBadTargetAndSubDeviceAreIsolated adds a target nobody listens on,
// with a sub-device the cloud does not know: the target is dialled with a
// growing back-off, the sub-device's login fails, and the other units are
// polled and published as usual.
func TestBadTargetAndSubDeviceAreIsolated(t *testing.T) {
	clk := clock.NewManual(time.Now().Truncate(time.Second))
	c := startCloud(t)
	f := startFleet(t, clk)
	cfg := edgeConfig(t, c, f, t.TempDir())
	cfg.Targets = append(cfg.Targets, edge.Target{Name: "dead", Addr: testkit.FreeAddr(t, "tcp"), Units: []edge.Unit{
		{Unit: regmap.Unit{Device: "WT09", ID: 1, Map: "wind-turbine"}, Secret: "unknown"}}})
	e, _ := runEdge(t, cfg, edge.WithClock(clk))
	waitMetric(t, e, "gale_edge_uplink_connected", nil, equal(1), "edge did not log in")
	require.Equal(t, 1.0, metric(t, e, "gale_edge_subdevice_login_failures_total", nil))
	s := newStepper(t, clk, e)
	s.fast, s.slow = 4, 3 // and WT09's groups
	s.step(40)
	// Dialled at 0, 1, 3, 7, 15 and 31 s: the back-off doubles from 1 s.
	require.Equal(t, 6.0, metric(t, e, "gale_edge_poll_errors_total", map[string]string{"device": "WT09", "kind": "connection"}))
	require.Zero(t, metric(t, e, "gale_edge_samples_total", map[string]string{"device": "WT09"}), "never read: nothing to send")
	waitMetric(t, e, "gale_edge_queue_depth", nil, equal(0), "the good units' samples are sent")
	require.Equal(t, float64(3*41+2*5), metric(t, e, "gale_edge_samples_total", nil))
	require.Equal(t, "null", qualityOf(t, c.latest(t, "wind-turbine", "WT01", "WTUR.W").Measurepoints["WTUR.W"]))
}

// qualityOf returns the quality of a measurepoint value ("null" for a bare value).
func qualityOf(t *testing.T, v json.RawMessage) string {
	t.Helper()
	if !strings.HasPrefix(string(v), "{") {
		return "null"
	}
	var q api.QualityValue
	require.NoError(t, json.Unmarshal(v, &q))
	b, _ := json.Marshal(q.Quality)
	return string(b)
}

// TestStartsFromCachedModels runs an edge with the cloud unreachable: it
// starts from the thing models cached by an earlier run, and refuses to
// start without them.
func TestStartsFromCachedModels(t *testing.T) {
	c := startCloud(t)
	f := startFleet(t, nil)
	cfg := edgeConfig(t, c, f, t.TempDir())
	e, stop := runEdge(t, cfg)
	waitMetric(t, e, "gale_edge_uplink_connected", nil, equal(1), "edge did not log in")
	stop()
	require.FileExists(t, filepath.Join(cfg.DataDir, "models", "wind-turbine.json"))
	require.FileExists(t, filepath.Join(cfg.DataDir, "models", "met-mast.json"))

	dead := testkit.FreeAddr(t, "tcp")
	cfg.Cloud.APIURL, cfg.Cloud.MQTTAddr = "http://"+dead, dead
	e, _ = runEdge(t, cfg)
	waitMetric(t, e, "gale_edge_samples_total", nil, atLeast(6), "edge does not poll from cached models")
	require.Zero(t, metric(t, e, "gale_edge_uplink_connected", nil))

	cfg.DataDir = t.TempDir()
	e, err := edge.New(cfg, quiet())
	require.NoError(t, err)
	err = e.Run(t.Context())
	require.ErrorIs(t, err, edge.ErrNoModel)
	require.Contains(t, err.Error(), "wind-turbine")
}
