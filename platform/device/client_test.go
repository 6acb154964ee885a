package device_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

// run runs c until the test ends.
func run(t testing.TB, c *device.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, c.Run(ctx)) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func fastRetry(cfg device.Config) device.Config {
	cfg.MinBackoff, cfg.MaxBackoff, cfg.AckTimeout = 20*time.Millisecond, 200*time.Millisecond, 5*time.Second
	return cfg
}

// TestClientResumesAfterBrokerRestart posts through a gateway for its
// sub-device while the node runs, while it is down and after it restarted
// on the same data and port: the client reconnects with a fresh login, logs
// the sub-device in again and replays what it queued through resume/batch,
// so every sample is stored once.
func TestClientResumesAfterBrokerRestart(t *testing.T) {
	cfg := nodetest.Config(t)
	cfg.MQTT.Addr = testkit.FreeAddr(t, "tcp")
	h := nodetest.Start(t, cfg)
	h.SetupProduct(t, "sensor", "Seq")
	h.SetupProduct(t, "gateway")
	gw := h.CreateDevice(t, api.Device{ProductKey: "gateway", DeviceKey: "g1", Site: "test-site"})
	sub := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "s1", Site: "test-site"})

	c := device.NewClient(fastRetry(device.Config{
		Broker: cfg.MQTT.Addr, ProductKey: gw.ProductKey, DeviceKey: gw.DeviceKey, Secret: gw.Secret,
		SubDevices: []device.SubDevice{{ProductKey: sub.ProductKey, DeviceKey: sub.DeviceKey, Secret: sub.Secret}},
	}), slog.New(slog.DiscardHandler))
	run(t, c)
	require.Eventually(t, func() bool { return c.Stats().Connected }, 10*time.Second, 10*time.Millisecond)

	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	n := 0
	post := func(count int) {
		for range count {
			require.NoError(t, c.PostFor("sensor", "s1", t0.Add(time.Duration(n)*100*time.Millisecond), map[string]any{"Seq": n}))
			n++
			time.Sleep(5 * time.Millisecond) // a device posting now and then, not a burst
		}
	}
	// delivered: acknowledged live, or (on a slow box, past AckTimeout) queued and replayed
	delivered := func() uint64 { s := c.Stats(); return s.Sent + s.Resumed }
	post(20)
	require.Eventually(t, func() bool { return delivered() == 20 }, 10*time.Second, 10*time.Millisecond)

	h.Stop()
	require.Eventually(t, func() bool { return !c.Stats().Connected }, 10*time.Second, 10*time.Millisecond)
	post(30)
	require.GreaterOrEqual(t, c.Stats().Queued, 30, "posts while the broker is down are queued")

	h2 := nodetest.Start(t, cfg)
	require.Eventually(t, func() bool { s := c.Stats(); return s.Connected && s.Queued == 0 }, 20*time.Second, 10*time.Millisecond)
	post(20) // live again, through the sub-device's fresh login
	require.Eventually(t, func() bool { return delivered() >= uint64(n) }, 10*time.Second, 10*time.Millisecond)

	end := t0.Add(time.Duration(n) * 100 * time.Millisecond)
	require.Eventually(t, func() bool {
		s := h2.Query(t, `count_over_time(Seq{device="s1"}[10m])`, end)
		return len(s) == 1 && s[0].Float() == float64(n)
	}, 10*time.Second, 50*time.Millisecond, "every sample stored")
	sum := h2.Query(t, `sum_over_time(Seq{device="s1"}[10m])`, end)
	require.Equal(t, float64(n*(n-1)/2), sum[0].Float(), "each sample once, with its own value")
	require.Equal(t, 0.0, h2.Query(t, `resets(Seq{device="s1"}[10m])`, end)[0].Float(), "values rise with time")

	st := c.Stats()
	require.Zero(t, st.Dropped)
	require.Zero(t, st.Rejected, st.LastReject)
	require.GreaterOrEqual(t, st.Resumed, uint64(30))
	require.GreaterOrEqual(t, st.Connects, uint64(2), "logged in again after the restart")
	resumes := h2.Metric(t, `gale_broker_messages_total{kind="resume"}`)
	require.GreaterOrEqual(t, resumes, 1.0)
	require.LessOrEqual(t, resumes, 3.0, "the backlog goes in batches, several samples per message")
}

// TestClientDropsOldestWhenQueueFull queues more than the queue holds while
// not running, then connects: the newest samples arrive, the oldest are counted as dropped.
func TestClientDropsOldestWhenQueueFull(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	h.SetupProduct(t, "sensor", "Seq")
	d := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "test-site"})
	c := device.NewClient(fastRetry(device.Config{
		Broker: h.MQTTAddr(), ProductKey: d.ProductKey, DeviceKey: d.DeviceKey, Secret: d.Secret, QueueSize: 5,
	}), slog.New(slog.DiscardHandler))

	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i := range 8 {
		require.NoError(t, c.Post(t0.Add(time.Duration(i)*time.Second), map[string]any{"Seq": i}))
	}
	st := c.Stats()
	require.Equal(t, 5, st.Queued)
	require.Equal(t, uint64(3), st.Dropped)

	run(t, c)
	require.Eventually(t, func() bool { return c.Stats().Resumed == 5 }, 10*time.Second, 10*time.Millisecond)
	at := t0.Add(8 * time.Second)
	require.Eventually(t, func() bool {
		s := h.Query(t, `count_over_time(Seq{device="d1"}[1m])`, at)
		return len(s) == 1 && s[0].Float() == 5
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, 3.0, h.Query(t, `min_over_time(Seq{device="d1"}[1m])`, at)[0].Float(), "samples 0, 1 and 2 were dropped")
}

// TestClientPostsEventsAndCountsRejections posts an event live and a
// sample the broker refuses (an unknown point): the event is ingested, the
// refusal counted with its reason.
func TestClientPostsEventsAndCountsRejections(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	h.SetupProduct(t, "sensor", "Seq")
	var p api.Product
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/products/sensor", nil, &p))
	p.Model.Events = []api.Event{{ID: "alarm", Severity: "warning", Output: []api.Param{{ID: "code", Type: api.TypeInt}}}}
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodPut, "/api/v1/products/sensor", p, nil))
	d := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "test-site"})
	c := device.NewClient(fastRetry(device.Config{Broker: h.MQTTAddr(), ProductKey: d.ProductKey, DeviceKey: d.DeviceKey, Secret: d.Secret}),
		slog.New(slog.DiscardHandler))
	run(t, c)
	require.Eventually(t, func() bool { return c.Stats().Connected }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, c.PostEvent("alarm", time.Now(), map[string]any{"code": 7}))
	require.NoError(t, c.Post(time.Now(), map[string]any{"Nope": 1}))
	require.Eventually(t, func() bool { return h.Metric(t, `gale_broker_messages_total{kind="event"}`) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return c.Stats().Rejected == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Contains(t, c.Stats().LastReject, "thing/measurepoint/post_reply: 404")
	// The node keeps the event: the device's events list has it (MQTT → gale.events → registry → HTTP).
	require.Eventually(t, func() bool {
		var evs []api.DeviceEvent
		return h.Do(t, http.MethodGet, "/api/v1/devices/sensor/d1/events", nil, &evs) == http.StatusOK &&
			len(evs) == 1 && evs[0].Event == "alarm" && string(evs[0].Params) == `{"code":7}`
	}, 10*time.Second, 50*time.Millisecond, "the event is not in the device's events")
}

// TestClientBacksOffAndSignsEveryAttempt points a client at a listener that
// reads each CONNECT and hangs up: the attempts come ever more slowly up to
// MaxBackoff (never sooner than half the current backoff: the jitter), and
// every one carries a login signed afresh.
func TestClientBacksOffAndSignsEveryAttempt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var stamps []int64
	var at []time.Time
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 1024)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := conn.Read(buf)
			conn.Close()
			_, rest, ok := strings.Cut(string(buf[:n]), "timestamp=")
			ts, _, _ := strings.Cut(rest, "|")
			ms, err := strconv.ParseInt(ts, 10, 64)
			if !ok || err != nil {
				continue
			}
			mu.Lock()
			stamps, at = append(stamps, ms), append(at, time.Now())
			mu.Unlock()
		}
	}()

	minB, maxB := 20*time.Millisecond, 160*time.Millisecond
	c := device.NewClient(device.Config{Broker: ln.Addr().String(), ProductKey: "p", DeviceKey: "d", Secret: "s",
		MinBackoff: minB, MaxBackoff: maxB}, slog.New(slog.DiscardHandler))
	run(t, c)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(at) >= 8 }, 10*time.Second, 10*time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	backoff := minB
	for i := 1; i < len(at); i++ {
		require.Greater(t, stamps[i], stamps[i-1], "attempt %d is signed afresh", i)
		require.GreaterOrEqual(t, at[i].Sub(at[i-1]), backoff/2, "attempt %d came too soon", i)
		backoff = min(2*backoff, maxB)
	}
	require.False(t, c.Stats().Connected)
}
