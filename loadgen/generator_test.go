package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/pki"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("GALE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// run runs cfg and returns its report.
func run(t testing.TB, cfg Config) *Report {
	t.Helper()
	var progress io.Writer
	if testing.Verbose() {
		progress = os.Stderr
	}
	g, err := New(cfg, testLogger(t), progress)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := g.Run(ctx)
	require.NoError(t, err)
	var text bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	t.Logf("report:\n%s", text.String())
	return rep
}

// galeConfig is a short run against the node of h.
func galeConfig(h *nodetest.Harness, mqttAddr string) Config {
	cfg := DefaultConfig()
	cfg.MQTTAddr, cfg.APIURL, cfg.Token = mqttAddr, h.BaseURL, h.Token
	cfg.SettleTimeout = 10 * time.Second
	cfg.ProbeInterval = 20 * time.Millisecond
	return cfg
}

// TestRunAgainstGale runs 50 devices × 20 msgs/s for 3 s (less under the
// race detector) against an in-process node: no loss, the offered rate
// achieved, every report written.
func TestRunAgainstGale(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	cfg := galeConfig(h, h.MQTTAddr())
	rate := 1000.0
	if raceEnabled {
		rate = 250 // what the node sustains under the race detector on two cores
	}
	total := int64(3 * rate)
	cfg.Devices, cfg.Rate, cfg.Duration, cfg.Points = 50, rate, 3*time.Second, 10
	cfg.Profile, cfg.Replies = ProfileTurbine, true
	rep := run(t, cfg)

	require.Equal(t, 50, rep.Devices.Connected)
	require.Equal(t, total, rep.Messages.Offered)
	require.Equal(t, total, rep.Messages.Acknowledged)
	require.Empty(t, rep.Errors)
	require.True(t, rep.Ledger.Checked, rep.Ledger.Error)
	require.Equal(t, total, rep.Ledger.Acknowledged)
	require.Equal(t, total, rep.Ledger.Stored)
	require.Zero(t, rep.Ledger.Lost())
	require.Zero(t, rep.Ledger.Duplicates)
	require.InDelta(t, rate, rep.Rate.Offered, rate/50)
	require.GreaterOrEqual(t, rep.Rate.Ratio, 0.95, "achieved %.0f of offered %.0f", rep.Rate.Achieved, rep.Rate.Offered)
	require.InDelta(t, 11*rate, rep.Rate.Datapoints, rate)
	require.Zero(t, rep.E2EUnseen)
	require.Greater(t, rep.CPU.Cores, 0.0)

	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "report.json"), filepath.Join(dir, "report.html")
	require.NoError(t, rep.WriteJSON(jsonPath))
	require.NoError(t, rep.WriteHTML(htmlPath))
	var decoded struct {
		Latency map[string]map[string]float64 `json:"latency"`
		Ledger  map[string]any                `json:"ledger"`
	}
	b, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &decoded))
	for _, kind := range []string{"connect", "puback", "e2e", "send_lag"} {
		for _, q := range []string{"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"} {
			require.Greater(t, decoded.Latency[kind][q], 0.0, "%s %s", kind, q)
		}
	}
	require.EqualValues(t, total, decoded.Latency["puback"]["count"])
	require.Equal(t, 0.0, decoded.Ledger["missing"])
	html, err := os.ReadFile(htmlPath)
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(string(html), "<svg "), "throughput and latency plots")
	require.Contains(t, string(html), "<polyline")
	require.NotContains(t, string(html), "<script")
}

// lossyRelay is an MQTT broker that forwards each publish to a Gale node
// (logging in there with the device's own signed credentials) before it
// acknowledges it, except that it acknowledges and drops the messages drop
// picks, sends a wrong Seq value for those tamper picks, and stores a second
// copy at another timestamp for those dup picks.
type lossyRelay struct {
	mqtt.HookBase
	target            string
	drop, tamper, dup func(dk string, seq int64) bool

	mu      sync.Mutex
	clients map[string]paho.Client
	dropped map[string][]int64
	errs    []error
}

func (r *lossyRelay) ID() string { return "lossy-relay" }

func (r *lossyRelay) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish || b == mqtt.OnDisconnect
}

func (r *lossyRelay) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + r.target).SetProtocolVersion(4).
		SetClientID(pk.Connect.ClientIdentifier).SetUsername(string(pk.Connect.Username)).SetPassword(string(pk.Connect.Password)).
		SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return false
	}
	r.mu.Lock()
	r.clients[cl.ID] = c
	r.mu.Unlock()
	return true
}

func (r *lossyRelay) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

func (r *lossyRelay) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	r.mu.Lock()
	c := r.clients[cl.ID]
	r.mu.Unlock()
	if c != nil {
		c.Disconnect(0)
	}
}

func (r *lossyRelay) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	topic, err := api.ParseTopic(pk.TopicName)
	var req struct {
		Params struct {
			Measurepoints map[string]json.RawMessage `json:"measurepoints"`
			Time          int64                      `json:"time"`
		} `json:"params"`
	}
	if err == nil {
		err = json.Unmarshal(pk.Payload, &req)
	}
	seq, perr := strconv.ParseInt(string(req.Params.Measurepoints[SeqPoint]), 10, 64)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || perr != nil {
		r.errs = append(r.errs, fmt.Errorf("relay: %q: %v %v", pk.Payload, err, perr))
		return pk, nil
	}
	dk := topic.DeviceKey
	payloads := [][]byte{pk.Payload}
	seqField := fmt.Sprintf(`"%s":%d,`, SeqPoint, seq)
	switch {
	case r.drop(dk, seq):
		r.dropped[dk] = append(r.dropped[dk], seq)
		return pk, nil // acknowledged, never stored
	case r.tamper(dk, seq):
		payloads[0] = bytes.Replace(pk.Payload, []byte(seqField), fmt.Appendf(nil, `"%s":%d,`, SeqPoint, seq*1000), 1)
	case r.dup(dk, seq):
		t := fmt.Sprintf(`"time":%d}`, req.Params.Time)
		payloads = append(payloads, bytes.Replace(pk.Payload, []byte(t), fmt.Appendf(nil, `"time":%d}`, req.Params.Time+1), 1))
	}
	for _, p := range payloads {
		tok := r.clients[cl.ID].Publish(pk.TopicName, 1, false, p)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			r.errs = append(r.errs, fmt.Errorf("relay to gale: %v", tok.Error()))
		}
	}
	return pk, nil
}

// startMochi serves a mochi broker with hooks on a free loopback port (over TLS when tlsCfg is set).
func startMochi(t testing.TB, tlsCfg *tls.Config, hooks ...mqtt.Hook) string {
	t.Helper()
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, h := range hooks {
		require.NoError(t, s.AddHook(h, nil))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	require.NoError(t, s.AddListener(listeners.NewNet("test", ln)))
	require.NoError(t, s.Serve())
	t.Cleanup(func() { _ = s.Close() })
	return addr
}

// TestLedgerCatchesLoss publishes through a relay that acknowledges every
// message but drops some, tampers with one and duplicates one on its way
// to the node: the ledger must name exactly those, by device.
func TestLedgerCatchesLoss(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	relay := &lossyRelay{
		target: h.MQTTAddr(), clients: map[string]paho.Client{}, dropped: map[string][]int64{},
		drop: func(dk string, seq int64) bool {
			return dk == "lg-00001" && seq%5 == 2 || dk == "lg-00002" && seq == 7
		},
		tamper: func(dk string, seq int64) bool { return dk == "lg-00002" && seq == 9 },
		dup:    func(dk string, seq int64) bool { return dk == "lg-00002" && seq == 11 },
	}
	cfg := galeConfig(h, startMochi(t, nil, relay))
	cfg.Devices, cfg.Rate, cfg.Duration, cfg.Points, cfg.ProbeDevices = 3, 60, 2*time.Second, 2, 1
	cfg.SettleTimeout = 2 * time.Second // the dropped samples never come
	rep := run(t, cfg)

	relay.mu.Lock()
	require.Empty(t, relay.errs)
	dropped := relay.dropped
	relay.mu.Unlock()
	require.EqualValues(t, 120, rep.Messages.Acknowledged)
	require.Equal(t, []int64{2, 7, 12, 17, 22, 27, 32, 37}, dropped["lg-00001"])
	require.Equal(t, []int64{7}, dropped["lg-00002"])

	l := rep.Ledger
	require.True(t, l.Checked, l.Error)
	require.EqualValues(t, 120, l.Acknowledged)
	require.EqualValues(t, 9, l.Missing)
	require.EqualValues(t, 1, l.WrongValue)
	require.EqualValues(t, 1, l.Duplicates)
	require.EqualValues(t, 10, l.Lost())
	require.EqualValues(t, 110, l.Stored)
	require.Equal(t, []DeviceLoss{
		{Device: "loadgen/lg-00001", Missing: 8, MissingSeq: dropped["lg-00001"]},
		{Device: "loadgen/lg-00002", Missing: 1, WrongValue: 1, Duplicates: 1, MissingSeq: []int64{7}, WrongSeq: []int64{9}, DupSeq: []int64{11}},
	}, l.Devices)

	slo, err := ParseSLO("loss=0,duplicates=0,errors=0")
	require.NoError(t, err)
	res := slo.Evaluate(rep)
	require.False(t, res[0].Pass)
	require.False(t, res[1].Pass)
	require.True(t, res[2].Pass)
}

// slowHook makes a broker take delay over every publish before its PUBACK.
type slowHook struct {
	mqtt.HookBase
	delay time.Duration
}

func (h *slowHook) ID() string           { return "slow" }
func (h *slowHook) Provides(b byte) bool { return b == mqtt.OnPublish }
func (h *slowHook) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	time.Sleep(h.delay)
	return pk, nil
}

// TestTimetableHoldsAgainstSlowBroker runs 4 devices at 100 msgs/s each
// against a broker that handles a connection's messages at 50/s: the
// messages still go out on time and the slowness shows as latency.
func TestTimetableHoldsAgainstSlowBroker(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Plain, cfg.MQTTAddr = true, startMochi(t, nil, new(auth.AllowHook), &slowHook{delay: 20 * time.Millisecond})
	cfg.Devices, cfg.Rate, cfg.Duration, cfg.MaxInflight = 4, 400, 2*time.Second, 1000
	rep := run(t, cfg)

	require.EqualValues(t, 800, rep.Messages.Offered)
	require.EqualValues(t, 800, rep.Messages.Sent, "every message went out")
	require.EqualValues(t, 800, rep.Messages.Acknowledged)
	require.InDelta(t, 400, rep.Rate.Offered, 10)
	require.Less(t, rep.Rate.Achieved, 0.75*rep.Rate.Offered, "the broker cannot keep up")
	lag, puback := rep.Latency["send_lag"], rep.Latency["puback"]
	require.Less(t, lag.P99, 100.0, "messages left on their timetable")
	require.Greater(t, puback.P50, 500.0, "waiting for the broker counts as latency")
	require.Greater(t, puback.Max, 1500.0)
	// The plots show the latency growing over the run.
	var first, last float64
	for _, p := range rep.Timeline {
		if p.PubackP99 > 0 {
			if first == 0 {
				first = p.PubackP99
			}
			last = p.PubackP99
		}
	}
	require.Greater(t, last, 3*first)
}

// stallHook holds the tenth publish of every client ID for stall: the
// broker stops answering on that connection, as a frozen node would.
type stallHook struct {
	mqtt.HookBase
	stall time.Duration
	mu    sync.Mutex
	seen  map[string]int
}

func (h *stallHook) ID() string           { return "stall" }
func (h *stallHook) Provides(b byte) bool { return b == mqtt.OnPublish }
func (h *stallHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.mu.Lock()
	h.seen[cl.ID]++
	tenth := h.seen[cl.ID] == 10
	h.mu.Unlock()
	if tenth {
		time.Sleep(h.stall)
	}
	return pk, nil
}

// TestDeviceRedialsAfterPubackTimeout runs devices against a broker that
// stops answering each one's first connection after nine messages: each device gives up on it
// after the publish timeout, redials, and publishes again; the outage shows
// in the reconnect and ack_gap latencies.
func TestDeviceRedialsAfterPubackTimeout(t *testing.T) {
	cfg := DefaultConfig()
	hook := &stallHook{stall: 3 * time.Second, seen: map[string]int{}}
	cfg.Plain, cfg.MQTTAddr = true, startMochi(t, nil, new(auth.AllowHook), hook)
	cfg.Devices, cfg.Rate, cfg.Duration, cfg.PublishTimeout = 2, 40, 4*time.Second, 500*time.Millisecond
	rep := run(t, cfg)

	require.GreaterOrEqual(t, rep.Errors["publish_timeout"], int64(2), "a message of each device timed out")
	reconnect, gap := rep.Latency["reconnect"], rep.Latency["ack_gap"]
	require.EqualValues(t, 2, reconnect.Count, "each device redialled once")
	require.Less(t, reconnect.Max, 2000.0, "redialled within the once-a-second gate and a connect")
	require.Greater(t, gap.Max, 500.0, "a device went at least the publish timeout without an acknowledgement")
	require.Greater(t, rep.Messages.Acknowledged, rep.Messages.Offered/2, "and published again after the redial")
}

// TestPlainBrokersAndTLS runs the plain mode over TLS against mochi, then
// through Main against mochi with a comparison against mosquitto (a second
// mochi when mosquitto is not installed), writing the reports and failing an SLO.
func TestPlainBrokersAndTLS(t *testing.T) {
	serverTLS, caFile := testCA(t)
	cfg := DefaultConfig()
	cfg.Plain, cfg.MQTTAddr = true, startMochi(t, serverTLS, new(auth.AllowHook))
	cfg.TLS, cfg.TLSCAFile = true, caFile
	cfg.Devices, cfg.Rate, cfg.Duration, cfg.Points = 10, 200, time.Second, 5
	rep := run(t, cfg)
	require.Equal(t, "plain", rep.Target)
	require.EqualValues(t, 200, rep.Messages.Acknowledged)
	require.Empty(t, rep.Errors)
	require.False(t, rep.Ledger.Checked)

	dir := t.TempDir()
	var out, errb bytes.Buffer
	err := Main(context.Background(), []string{"--plain", "--mqtt-addr", startMochi(t, nil, new(auth.AllowHook)),
		"--compare-plain", startMosquitto(t), "--devices", "5", "--rate", "50", "--duration", "1s",
		"--report-json", filepath.Join(dir, "r.json"), "--report-html", filepath.Join(dir, "r.html"),
		"--slo", "p99_puback<1us,errors=0"}, &out, &errb)
	require.ErrorIs(t, err, ErrSLOFailed)
	require.Contains(t, err.Error(), "p99_puback<1us: measured")
	require.NotContains(t, err.Error(), "errors=0")
	require.Contains(t, out.String(), "acknowledged 50")
	require.Contains(t, out.String(), "vs plain")
	require.Contains(t, errb.String(), "offered", "progress lines on stderr")
	var got Report
	b, err := os.ReadFile(filepath.Join(dir, "r.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &got))
	require.NotNil(t, got.Baseline)
	require.EqualValues(t, 50, got.Baseline.Messages.Acknowledged)
	require.Greater(t, got.Comparison.RateRatio, 0.9)
	require.Greater(t, got.Comparison.PubackP99Ratio, 0.0)
	html, err := os.ReadFile(filepath.Join(dir, "r.html"))
	require.NoError(t, err)
	require.Equal(t, 4, strings.Count(string(html), "<svg "), "plots of the run and of its baseline")
}

// startMosquitto runs Debian's mosquitto on a free port, or a second mochi broker when it is not installed.
func startMosquitto(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Log("mosquitto not installed (apt-get install mosquitto): comparing with a second mochi broker")
		return startMochi(t, nil, new(auth.AllowHook))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	require.NoError(t, ln.Close())
	conf := testkit.WriteFile(t, t.TempDir(), "mosquitto.conf", "listener "+port+" 127.0.0.1\nallow_anonymous true\n")
	cmd := exec.Command(bin, "-c", conf)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "mosquitto did not start: %s", &logs)
	return addr
}

// testCA makes a development CA and a server certificate for 127.0.0.1,
// returning the server's TLS config and the CA's PEM file.
func testCA(t testing.TB) (*tls.Config, string) {
	t.Helper()
	files, err := pki.EnsureDev(t.TempDir(), nil, time.Now())
	require.NoError(t, err)
	srv, err := pki.ServerConfig{CertFile: files.Cert, KeyFile: files.Key}.Load()
	require.NoError(t, err)
	return srv, files.CA
}

// TestRunAgainstGaleOverMutualTLS runs loadgen through Main against a node
// that requires device certificates: MQTT over TLS with each device's own
// certificate ({pk}/{dk} in --cert-file), the API over https; nothing lost.
func TestRunAgainstGaleOverMutualTLS(t *testing.T) {
	cfg := nodetest.Config(t)
	files := nodetest.TLS(t, &cfg, pki.ClientAuthRequire)
	h := nodetest.Start(t, cfg)
	require.True(t, strings.HasPrefix(h.BaseURL, "https://"))
	ca, err := pki.LoadCA(files.CA, files.CAKey)
	require.NoError(t, err)
	dir := t.TempDir()
	for i := range 3 {
		certFile, keyFile := pki.DeviceFiles(dir, "loadgen", fmt.Sprintf("lg-%05d", i))
		require.NoError(t, ca.IssueDevice(certFile, keyFile, "loadgen", fmt.Sprintf("lg-%05d", i), time.Now()))
	}
	tokenFile := testkit.WriteFile(t, dir, "token", h.Token)
	report := filepath.Join(dir, "r.json")
	var out, errb bytes.Buffer
	err = Main(context.Background(), []string{"--mqtt-addr", h.MQTTAddr(), "--api-url", h.BaseURL, "--token-file", tokenFile,
		"--ca-file", files.CA, "--cert-file", filepath.Join(dir, "{pk}_{dk}.crt"), "--key-file", filepath.Join(dir, "{pk}_{dk}.key"),
		"--devices", "3", "--rate", "30", "--duration", "1s", "--settle-timeout", "10s", "--quiet", "--report-json", report}, &out, &errb)
	require.NoError(t, err, "%s%s", &out, &errb)
	var rep Report
	b, err := os.ReadFile(report)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rep))
	require.True(t, rep.Profile.TLS)
	require.Equal(t, 3, rep.Devices.Connected)
	require.EqualValues(t, 30, rep.Messages.Acknowledged)
	require.True(t, rep.Ledger.Checked, rep.Ledger.Error)
	require.EqualValues(t, 30, rep.Ledger.Stored)

	err = Main(context.Background(), []string{"--mqtt-addr", h.MQTTAddr(), "--api-url", h.BaseURL, "--token-file", tokenFile,
		"--ca-file", files.CA, "--devices", "1", "--rate", "1", "--duration", "1s", "--quiet", "--connect-timeout", "2s"}, &out, &errb)
	require.Error(t, err, "without a client certificate no device connects")
}
