package node_test

import (
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

// loadResult is what one load run measured.
type loadResult struct {
	msgs       int
	elapsed    time.Duration // first publish to last TSDB commit
	p50, p99   time.Duration // PUBACK latency
	datapoints int
}

// runLoad publishes total QoS 1 messages of points points each from conns
// connections (at rate msgs/s overall, or as fast as acknowledged when rate is 0)
// and waits until the TSDB writer has committed every sample.
func runLoad(b *testing.B, h *nodetest.Harness, conns, points, total int, rate float64) loadResult {
	pts := make([]string, points)
	for i := range pts {
		pts[i] = fmt.Sprintf("P%d", i)
	}
	pk := fmt.Sprintf("bench%d", time.Now().UnixNano())
	h.SetupProduct(b, pk, pts...)
	clients := make([]paho.Client, conns)
	for i := range clients {
		d := h.CreateDevice(b, api.Device{ProductKey: pk, DeviceKey: fmt.Sprintf("d%d", i), Site: "test-site"})
		cred := api.Sign(d.DeviceKey, pk, d.DeviceKey, d.Secret, time.Now().UnixMilli())
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + h.MQTTAddr()).SetProtocolVersion(4).
			SetClientID(cred.ClientID).SetUsername(cred.Username).SetPassword(cred.Password).
			SetAutoReconnect(false).SetOrderMatters(false).SetMaxResumePubInFlight(0))
		tok := c.Connect()
		tok.Wait()
		require.NoError(b, tok.Error())
		clients[i] = c
		defer c.Disconnect(0)
	}
	startSamples := h.Metric(b, "gale_ingest_samples_total")
	var lat []time.Duration
	var mu sync.Mutex
	var sent atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	perConn := total / conns
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := api.MeasurepointPostTopic(pk, fmt.Sprintf("d%d", i))
			mine := make([]time.Duration, 0, perConn)
			// Each connection keeps a window of messages in flight; the broker handles them in order.
			window := make(chan struct{}, 16)
			var inflight sync.WaitGroup
			for n := range perConn {
				if rate > 0 {
					due := start.Add(time.Duration(float64(n*conns+i) / rate * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				window <- struct{}{}
				payload := fmt.Sprintf(`{"id":"%d","method":"thing.measurepoint.post","params":{"measurepoints":{`, n)
				for j, p := range pts {
					if j > 0 {
						payload += ","
					}
					payload += fmt.Sprintf(`"%s":%d.5`, p, n+j)
				}
				// One millisecond per message keeps each device's timestamps distinct.
				payload += fmt.Sprintf(`},"time":%d}}`, start.UnixMilli()+int64(n))
				t0 := time.Now()
				tok := c.Publish(topic, 1, false, payload)
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					tok.Wait()
					if tok.Error() == nil {
						mu.Lock()
						mine = append(mine, time.Since(t0))
						mu.Unlock()
						sent.Add(1)
					}
					<-window
				}()
			}
			inflight.Wait()
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.Logf("published %d messages in %s", sent.Load(), time.Since(start).Round(time.Millisecond))
	want := startSamples + float64(int(sent.Load())*points)
	require.Eventually(b, func() bool { return h.Metric(b, "gale_ingest_samples_total") >= want }, 120*time.Second, 10*time.Millisecond,
		"TSDB did not commit all %d samples", int(sent.Load())*points)
	elapsed := time.Since(start)
	slices.Sort(lat)
	require.NotEmpty(b, lat)
	return loadResult{msgs: int(sent.Load()), elapsed: elapsed, datapoints: int(sent.Load()) * points,
		p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}
}

// BenchmarkEndToEnd measures QoS 1 messages of 10 points from MQTT publish
// to TSDB commit, with the publishers on the same machine: first flat out,
// then at half that rate for the PUBACK latency.
func BenchmarkEndToEnd(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(400)) // as gale up sets it
	cfg := nodetest.Config(b)
	cfg.MQTT.RateLimit, cfg.MQTT.Burst = 1e6, 1e6
	h := nodetest.Start(b, cfg)
	const conns, points, total = 200, 10, 200_000
	for range b.N {
		max := runLoad(b, h, conns, points, total, 0)
		maxRate := float64(max.msgs) / max.elapsed.Seconds()
		b.ReportMetric(maxRate, "msgs/s")
		b.ReportMetric(float64(max.datapoints)/max.elapsed.Seconds(), "datapoints/s")
		b.ReportMetric(float64(max.p99.Microseconds())/1000, "p99-puback-ms-at-max")
		half := runLoad(b, h, conns, points, total/2, maxRate/2)
		b.ReportMetric(float64(half.p50.Microseconds())/1000, "p50-puback-ms-at-half")
		b.ReportMetric(float64(half.p99.Microseconds())/1000, "p99-puback-ms-at-half")
		b.Logf("flat out: %d msgs in %s = %.0f msgs/s, %.0f datapoints/s, PUBACK p50 %s p99 %s; at half (%.0f msgs/s): PUBACK p50 %s p99 %s",
			max.msgs, max.elapsed.Round(time.Millisecond), maxRate, float64(max.datapoints)/max.elapsed.Seconds(), max.p50, max.p99,
			maxRate/2, half.p50, half.p99)
	}
}
