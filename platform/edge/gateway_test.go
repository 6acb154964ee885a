package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

// gatewayRig is an uplink of gateway GW with sub-devices S01… of product
// bench-sensor (benchPoints float points each), a queue, and a Gale node
// reached through a proxy that can cut the connection.
type gatewayRig struct {
	h     *nodetest.Harness
	proxy *testkit.MQTTProxy
	cfg   Config
	subs  []Unit
	q     *Queue
	m     *metrics
	up    *uplink
}

const benchPoints = 20

func newGatewayRig(tb testing.TB, devices int, mutate func(*Config)) *gatewayRig {
	tb.Helper()
	h := nodetest.Start(tb, nodetest.Config(tb))
	points := make([]string, benchPoints)
	for i := range points {
		points[i] = fmt.Sprintf("P%02d", i)
	}
	h.SetupProduct(tb, "bench-sensor", points...)
	require.Equal(tb, http.StatusCreated, h.Do(tb, http.MethodPost, "/api/v1/products", api.Product{Key: "bench-gw"}, nil))
	gw := h.CreateDevice(tb, api.Device{ProductKey: "bench-gw", DeviceKey: "GW", Site: "test-site"})
	r := &gatewayRig{h: h, proxy: testkit.NewMQTTProxy(tb, h.MQTTAddr())}
	for i := range devices {
		d := h.CreateDevice(tb, api.Device{ProductKey: "bench-sensor", DeviceKey: fmt.Sprintf("S%02d", i+1), Site: "test-site"})
		u := Unit{ProductKey: d.ProductKey, Secret: d.Secret}
		u.Device = d.DeviceKey
		r.subs = append(r.subs, u)
	}
	r.cfg = Config{
		Gateway: Identity{ProductKey: "bench-gw", DeviceKey: "GW", Secret: gw.Secret},
		Cloud:   CloudConfig{MQTTAddr: r.proxy.Addr(), PublishTimeout: 10 * time.Second, KeepAlive: 15 * time.Second, ReconnectMax: 200 * time.Millisecond},
		Queue:   QueueConfig{MaxBytes: 1 << 30},
	}
	r.cfg.Default()
	if mutate != nil {
		mutate(&r.cfg)
	}
	q, err := OpenQueue(filepath.Join(tb.TempDir(), "queue.db"), r.cfg.Queue.MaxBytes, false)
	require.NoError(tb, err)
	tb.Cleanup(func() { q.Close() })
	r.q = q
	r.m = newMetrics(prometheus.NewRegistry(), q.Len)
	return r
}

// start runs the uplink (session, live and replay) until the test ends.
func (r *gatewayRig) start(tb testing.TB) {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("GALE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	up, err := newUplink(r.cfg, nil, r.subs, r.q, log, r.m, nil)
	require.NoError(tb, err)
	r.up = up
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, f := range []func(context.Context) error{up.run, up.live, up.replay} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				tb.Error(err)
			}
		}()
	}
	tb.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// waitOnline waits until the session is up with every sub-device logged in.
func (r *gatewayRig) waitOnline(tb testing.TB) {
	tb.Helper()
	require.Eventually(tb, func() bool {
		dev, logged := r.up.current()
		return dev != nil && len(logged) == len(r.subs)
	}, 20*time.Second, 2*time.Millisecond)
}

// pushRound queues, in one push as the poller does, the samples seq of
// sub-devices 0…n-1 at time t: every point is seq.
func (r *gatewayRig) pushRound(tb testing.TB, n int, t time.Time, seq int) {
	round := make([]Item, n)
	for i := range round {
		params := fmt.Appendf(nil, `{"measurepoints":{`)
		for p := range benchPoints {
			if p > 0 {
				params = append(params, ',')
			}
			params = fmt.Appendf(params, `"P%02d":%d`, p, seq)
		}
		params = fmt.Appendf(params, `},"time":%d}`, t.UnixMilli())
		round[i] = Item{ProductKey: "bench-sensor", DeviceKey: r.subs[i].Device, Time: t.UnixMilli(), Params: params}
	}
	if _, err := r.q.Push(round...); err != nil {
		tb.Fatal(err)
	}
}

// waitEmpty waits until the queue is empty, that is every sample acknowledged.
func (r *gatewayRig) waitEmpty(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if n, _ := r.q.Len(); n == 0 {
			return
		}
		if time.Now().After(deadline) {
			n, _ := r.q.Len()
			tb.Fatalf("%d samples still queued after %s", n, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Live samples go out in post/batch messages that keep each device's
// samples in order, and a disconnect in the middle loses nothing: what was
// in flight or queued meanwhile is replayed through resume, and every
// sample is in the TSDB once, with its value.
func TestGatewayBatchesKeepOrderAcrossDisconnect(t *testing.T) {
	const devices, perDevice = 5, 400
	r := newGatewayRig(t, devices, nil)
	r.start(t)
	r.waitOnline(t)

	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		for n := range perDevice {
			r.pushRound(t, devices, base.Add(time.Duration(n)*10*time.Millisecond), n)
			if n == perDevice/3 {
				r.proxy.Cut() // with samples in flight
			}
			if n == perDevice/2 {
				r.proxy.Restore()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	<-pushed
	r.waitEmpty(t, 60*time.Second)

	// On the wire: each device's live samples in order, in batches.
	live, batched := map[string][]int64{}, 0
	for _, m := range r.proxy.Published(api.MeasurepointPostBatchTopic("bench-gw", "GW")) {
		var req struct {
			Params []api.SubDeviceMeasurepoints `json:"params"`
		}
		require.NoError(t, json.Unmarshal(m.Payload, &req))
		if len(req.Params) > 1 {
			batched++
		}
		for _, s := range req.Params {
			live[s.DeviceKey] = append(live[s.DeviceKey], s.Time)
		}
	}
	require.Positive(t, batched, "samples went out in batches")
	for dk, times := range live {
		for i := 1; i < len(times); i++ {
			require.Less(t, times[i-1], times[i], "live samples of %s out of order", dk)
		}
	}
	resumed := 0
	for i := range devices {
		resumed += len(r.proxy.Published(api.MeasurepointResumeBatchTopic("bench-sensor", r.subs[i].Device)))
	}
	require.Positive(t, resumed, "the outage was replayed through resume")

	// In the TSDB: every sample, once, with its value.
	wantSum := float64(perDevice * (perDevice - 1) / 2)
	at := base.Add(perDevice * 10 * time.Millisecond)
	require.Eventually(t, func() bool {
		res := r.h.Query(t, `count_over_time(P07[5m])`, at)
		sums := r.h.Query(t, `sum_over_time(P07[5m])`, at)
		if len(res) != devices || len(sums) != devices {
			return false
		}
		for i := range res {
			if res[i].Float() != perDevice || sums[i].Float() != wantSum {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "every sample of every device is stored once")
}

// BenchmarkGatewayLive measures how many samples a second one gateway
// carries live: b.N samples of benchPoints points, pushed to the queue in
// poll rounds (one sample of each of the 10 sub-devices) as fast as it
// takes them while the uplink runs; the clock stops once the queue is
// empty (every sample acknowledged by the node, after Kafka has it).
func BenchmarkGatewayLive(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			r := newGatewayRig(b, 10, bc.mutate)
			r.start(b)
			r.waitOnline(b)
			now := time.Now().Add(-time.Duration(b.N/10) * time.Millisecond)
			b.ResetTimer()
			cpu0 := testkit.CPUTime()
			pushRounds(b, r, now)
			r.waitEmpty(b, 10*time.Minute)
			b.StopTimer()
			reportRate(b, r, testkit.CPUTime()-cpu0)
		})
	}
}

// BenchmarkGatewayReplay measures how many samples a second one gateway
// replays: b.N samples queued before it starts (a backlog), sent through
// resume/batch; the clock runs from the start (connect and login included)
// until the queue is empty.
func BenchmarkGatewayReplay(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			r := newGatewayRig(b, 10, bc.mutate)
			now := time.Now().Add(-time.Hour)
			pushRounds(b, r, now)
			b.ResetTimer()
			cpu0 := testkit.CPUTime()
			r.start(b)
			r.waitEmpty(b, 10*time.Minute)
			b.StopTimer()
			reportRate(b, r, testkit.CPUTime()-cpu0)
		})
	}
}

// pushRounds queues b.N samples in rounds of 10, the round k at now + k ms.
func pushRounds(b *testing.B, r *gatewayRig, now time.Time) {
	for n := 0; n < b.N; n += 10 {
		r.pushRound(b, min(10, b.N-n), now.Add(time.Duration(n/10)*time.Millisecond), n/10)
	}
}

// benchCases: the defaults, and one message of one sample (live) or one
// batch (replay) per round-trip, as the gateway did before.
var benchCases = []struct {
	name   string
	mutate func(*Config)
}{
	{"default", nil},
	{"one-in-flight", func(c *Config) { c.Cloud.MaxInFlight, c.Queue.LiveBatch = 1, 1 }},
}

// reportRate reports samples/s and points/s, and samples per CPU-second
// of the whole process (edge, broker, Kafka, TSDB and rules: everything
// runs in it), which says more than samples/s on a machine shared with
// other work.
func reportRate(b *testing.B, r *gatewayRig, cpu time.Duration) {
	s := b.Elapsed().Seconds()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(b.N)/s, "samples/s")
	b.ReportMetric(float64(b.N*benchPoints)/s, "points/s")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "samples/cpu-s")
	if n, _ := r.q.Len(); n != 0 || math.IsNaN(s) {
		b.Fatalf("%d samples left", n)
	}
}
