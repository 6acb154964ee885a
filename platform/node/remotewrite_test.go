package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/remotewrite"
)

// prometheusPeer is Debian's prometheus binary receiving remote write, on a
// loopback port and a data dir that survive a restart.
type prometheusPeer struct {
	bin, conf, data, addr string
	cmd                   *exec.Cmd
	logs                  bytes.Buffer
}

func newPrometheusPeer(t *testing.T) *prometheusPeer {
	t.Helper()
	p := &prometheusPeer{bin: requireTool(t, "prometheus", "prometheus")}
	dir := t.TempDir()
	p.conf, p.data = filepath.Join(dir, "prometheus.yml"), filepath.Join(dir, "data")
	// Backfill arrives hours late: the receiving TSDB needs an out-of-order window, as Gale's has.
	require.NoError(t, os.WriteFile(p.conf, []byte("storage:\n  tsdb:\n    out_of_order_time_window: 30d\n"), 0o644))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = ln.Addr().String()
	require.NoError(t, ln.Close())
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", p.logs.String())
		}
	})
	p.start(t)
	return p
}

func (p *prometheusPeer) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(p.bin, "--config.file="+p.conf, "--storage.tsdb.path="+p.data,
		"--web.listen-address="+p.addr, "--web.enable-remote-write-receiver", "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	require.NoError(t, p.cmd.Start())
	nodetest.WaitOK(t, "http://"+p.addr+"/-/ready", 30*time.Second)
}

func (p *prometheusPeer) stop(t *testing.T) {
	t.Helper()
	if p.cmd == nil {
		return
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, p.cmd.Wait(), "prometheus exit")
	p.cmd = nil
}

// series returns labels (as JSON) → time (ms) → value of a range-vector query at at.
func series(t *testing.T, base, token, expr string, at time.Time) map[string]map[int64]float64 {
	t.Helper()
	out := map[string]map[int64]float64{}
	for _, s := range nodetest.QuerySeries(t, base, token, expr, at) {
		b, err := json.Marshal(s.Metric)
		require.NoError(t, err)
		out[string(b)] = s.Samples()
	}
	return out
}

// TestRemoteWriteToPrometheus ships live telemetry and a 3-hour-old
// backfill to Debian's prometheus through its remote-write receiver, with
// the receiver stopped and restarted mid-stream, and requires Prometheus to
// hold exactly what Gale's own TSDB holds.
func TestRemoteWriteToPrometheus(t *testing.T) {
	prom := newPrometheusPeer(t)
	cfg := nodetest.Config(t)
	cfg.RemoteWrite = []remotewrite.Config{{Name: "prom", URL: "http://" + prom.addr + "/api/v1/write", MaxBackoff: 200 * time.Millisecond}}
	h := nodetest.Start(t, cfg)
	h.SetupProduct(t, "sensor", "Temp", "Seq")
	d := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "test-site"})
	dev := connect(t, h, d)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	want := map[string]map[int64]float64{} // metric name → time → value
	add := func(name string, ts time.Time, v float64) {
		if want[name] == nil {
			want[name] = map[int64]float64{}
		}
		want[name][ts.UnixMilli()] = v
	}
	seq, last := 0, time.Time{}
	post := func(n int) {
		for range n {
			ts := time.Now().Truncate(time.Millisecond)
			if !ts.After(last) {
				ts = last.Add(time.Millisecond)
			}
			last, seq = ts, seq+1
			require.NoError(t, dev.Post(ctx, ts, map[string]any{"Temp": 20 + float64(seq)/10, "Seq": map[string]any{"value": seq, "quality": seq % 3}}))
			add("Temp", ts, 20+float64(seq)/10)
			add("Seq", ts, float64(seq))
			add("Seq_quality", ts, float64(seq%3))
		}
	}
	backfill := func(from time.Time, n int) {
		var batch []map[string]any
		for i := range n {
			ts := from.Add(time.Duration(i) * time.Minute)
			batch = append(batch, map[string]any{"measurepoints": map[string]any{"Temp": float64(-i)}, "time": ts.UnixMilli()})
			add("Temp", ts, float64(-i))
		}
		params, _ := json.Marshal(batch)
		r, err := dev.Request(ctx, api.MeasurepointResumeBatchTopic("sensor", "d1"), api.Request{ID: dev.NewID(), Method: "thing.measurepoint.resume.batch", Params: params})
		require.NoError(t, err)
		require.Equal(t, api.CodeOK, r.Code, r.Message)
	}
	// requireAll waits until Prometheus holds every sample published, with
	// Gale's labels, and compares it with Gale's own query API.
	requireAll := func() {
		t.Helper()
		at := last.Add(time.Second)
		var got map[string]map[int64]float64
		require.Eventually(t, func() bool {
			got = map[string]map[int64]float64{}
			for name := range want {
				for labels, vals := range series(t, "http://"+prom.addr, "", name+"[4h]", at) {
					got[labels] = vals
				}
			}
			return len(got) == len(want) && total(got) == total(want)
		}, 30*time.Second, 100*time.Millisecond, "prometheus has %d of %d samples", total(got), total(want))
		for name, vals := range want {
			labels := fmt.Sprintf(`{"__name__":%q,"device":"d1","org":"test","point":%q,"product":"sensor","site":"test-site"}`, name, pointOf(name))
			require.Equal(t, vals, got[labels], "series %s", labels)
			require.Equal(t, series(t, h.BaseURL+"/prometheus", h.Token, name+"[4h]", at)[labels], got[labels], "Gale's TSDB and Prometheus hold the same %s", name)
		}
	}

	post(50)
	backfill(time.Now().Add(-3*time.Hour).Truncate(time.Minute), 60)
	requireAll()

	group := node.RemoteWriteConsumerGroup + "-" + cfg.NodeID + "-prom"
	prom.stop(t)
	post(100)
	backfill(time.Now().Add(-110*time.Minute).Truncate(time.Minute), 60) // after the first backfill: a conflicting sample would keep its first value
	lag := `gale_kafka_consumer_lag{group="` + group + `"}`
	require.Eventually(t, func() bool {
		return h.Metric(t, `gale_remote_write_retries_total{endpoint="prom"}`) > 0 && h.Metric(t, lag) > 0
	}, 15*time.Second, 50*time.Millisecond, "retries and lag while prometheus is down")
	require.Eventually(t, func() bool {
		n := 0
		for name := range want {
			for _, vals := range series(t, h.BaseURL+"/prometheus", h.Token, name+"[4h]", last.Add(time.Second)) {
				n += len(vals)
			}
		}
		return n == total(want)
	}, 15*time.Second, 50*time.Millisecond, "the local TSDB is not held back: it stores what was posted while Prometheus is down")
	post(20)
	prom.start(t)
	post(30)
	requireAll()
	require.Eventually(t, func() bool { return h.Metric(t, lag) == 0 }, 15*time.Second, 50*time.Millisecond, "lag after the restart")
	require.Equal(t, float64(total(want)), h.Metric(t, `gale_remote_write_samples_total{endpoint="prom",outcome="sent"}`), "sent once each: nothing was refused or repeated")
}

func total(m map[string]map[int64]float64) (n int) {
	for _, vals := range m {
		n += len(vals)
	}
	return n
}

func pointOf(name string) string {
	if name == "Seq_quality" {
		return "Seq"
	}
	return name
}
