package console_test

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
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/runs"
	"github.com/gale-iot/gale/stack"
	"github.com/gale-iot/gale/twins"
)

// step bounds one step in the browser: generous, for a loaded machine and the race detector (a
// sign-in checks a bcrypt hash); a passing run takes about 20 s in all.
const step = 45 * time.Second

// maxFirstLoad bounds the bytes over the wire of the fleet page's first
// load (page, scripts, styles, API calls; the live stream excepted).
const maxFirstLoad = 300 << 10

// console is the stack under test and the browser driving its console.
type console struct {
	t      *testing.T
	h      *nodetest.Harness
	base   string
	shots  string
	ctx    context.Context
	mu     sync.Mutex
	urls   []string
	bytes  float64
	errors []string
}

// startConsole runs `gale up`'s stack (node with the 20-turbine twin fleet at
// speed 20) in-process and a headless chromium against it.
func startConsole(t *testing.T) *console {
	chromium := nodetest.RequireTool(t, "chromium", "chromium")
	cfg := nodetest.Config(t)
	cfg.SeedDemo = node.Demo{Turbines: 20}
	fleet, err := twins.DemoConfig(20, 0, "127.0.0.1:0")
	require.NoError(t, err)
	fleet.Speed = 20
	require.NoError(t, cfg.Complete())
	ctx, cancel := context.WithCancel(context.Background())
	st, err := stack.New(ctx, stack.Config{Node: cfg, Fleet: fleet}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	h := nodetest.Attach(t, st.Node, cfg)

	shots := os.Getenv("GALE_CONSOLE_SHOTS")
	if shots == "" {
		shots = filepath.Join("..", "..", "ci", "reports", "console")
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))

	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]), chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.WindowSize(1440, 1000), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-pings", true), chromedp.Flag("dns-prefetch-disable", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	c := &console{t: t, h: h, base: h.BaseURL, shots: shots}
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			c.urls = append(c.urls, e.Request.URL)
		case *network.EventLoadingFinished:
			c.bytes += e.EncodedDataLength
		case *runtime.EventExceptionThrown:
			c.errors = append(c.errors, e.ExceptionDetails.Text)
		}
	}))
	t.Cleanup(func() { bcancel(); acancel() })
	c.ctx = bctx
	require.NoError(t, chromedp.Do(bctx)) // start the browser on the test's context, not on a step's timeout
	return c
}

// run runs browser steps with a deadline.
func (c *console) run(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	require.NoError(c.t, chromedp.Do(ctx, steps...), what)
}

// eval evaluates js in the page.
func eval[T any](c *console, js string) T {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	require.NoError(c.t, err, js)
	return v
}

// shot saves a PNG of the whole page as name.png.
func (c *console) shot(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.scrollTo(0, 0), true`)) // the sticky header at the top of the picture
	require.NoError(c.t, err, name)
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
	require.NoError(c.t, err, name)
	require.NotRegexp(c.t, `\b(null|undefined|NaN)\b|\[object `, text, "%s: a value the page failed to format", name)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(c.t, err, name)
	require.NoError(c.t, os.WriteFile(filepath.Join(c.shots, name+".png"), png, 0o644))
}

// signIn signs in at / with a user and password, or with an API token when user is empty.
func (c *console) signIn(user, secret string) {
	c.t.Helper()
	if user == "" {
		c.run("sign in with a token", step, chromedp.WaitVisible(chromedp.CSS(`#tab-token`)), chromedp.Click(chromedp.CSS(`#tab-token`)),
			chromedp.SendKeys(chromedp.CSS(`#token`), secret), chromedp.Click(chromedp.CSS(`#signin`)), chromedp.WaitVisible(chromedp.CSS(`#signout`)))
		return
	}
	c.run("sign in", step, chromedp.WaitVisible(chromedp.CSS(`#user`)), chromedp.SendKeys(chromedp.CSS(`#user`), user),
		chromedp.SendKeys(chromedp.CSS(`#password`), secret), chromedp.Click(chromedp.CSS(`#signin`)), chromedp.WaitVisible(chromedp.CSS(`#signout`)))
}

// waitJS evaluates js in the page until ok accepts its value or the timeout passes, and returns the value.
func waitJS[T any](c *console, what, js string, timeout time.Duration, ok func(T) bool) T {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
		cancel()
		if err == nil && ok(v) {
			return v
		}
		require.True(c.t, time.Now().Before(deadline), "%s: not within %s (last: %v, %v)", what, timeout, v, err)
		time.Sleep(200 * time.Millisecond)
	}
}

// registryAsAdmin, on the registry page as a cluster admin: a product imported from YAML, a bad device key
// refused next to its field, a device created (its secret shown once) that logs in, and its secret rotated in
// the page: the new one shown once, the old session dropped and the old secret refused.
func (c *console) registryAsAdmin() {
	t := c.t
	doc := "productKey: pump\nname: Water pump\nmodel:\n  measurepoints:\n    - {id: P.Flow, name: Flow, type: float, unit: m3/h, min: 0}\n"
	c.run("import a product", step, chromedp.SetValue(chromedp.CSS(`#import-yaml`), doc), chromedp.Click(chromedp.CSS(`#import-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#products tr[data-product="pump"]`)), chromedp.WaitVisible(chromedp.CSS(`#model-view table`)))
	c.run("a bad device key", step, chromedp.SetValue(chromedp.CSS(`#create-device select[name=productKey]`), "pump"),
		chromedp.SendKeys(chromedp.CSS(`#new-device-key`), "bad key!"), chromedp.Click(chromedp.CSS(`#create-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#create-device label .field-error`)))
	require.Contains(t, eval[string](c, `document.querySelector('#new-device-key').closest('label').textContent`), "deviceKey")
	require.NotContains(t, eval[string](c, `document.body.textContent`), "goroutine", "no stack trace")
	c.shot("registry-field-error")
	c.run("create a device", step, chromedp.SetValue(chromedp.CSS(`#new-device-key`), "pump-01"), chromedp.Click(chromedp.CSS(`#create-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#secret-value`)), chromedp.WaitVisible(chromedp.CSS(`#devices tr[data-device="pump/pump-01"]`)))
	first := eval[string](c, `document.querySelector('#secret-value').textContent`)
	require.Len(t, first, 32)
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	cfg := device.Config{Broker: c.h.MQTTAddr(), ProductKey: "pump", DeviceKey: "pump-01", Secret: first}
	dev, err := device.Connect(ctx, cfg)
	require.NoError(t, err, "the device logs in with the secret shown")
	defer dev.Close()

	rotate := `#devices tr[data-device="pump/pump-01"] .rotate-secret`
	c.run("rotate its secret", step, chromedp.Click(chromedp.CSS(`#secret-done`)), chromedp.Click(chromedp.CSS(rotate)),
		chromedp.WaitVisible(chromedp.CSS(rotate+`:not(.ghost)`)), chromedp.Click(chromedp.CSS(rotate)), chromedp.WaitVisible(chromedp.CSS(`#secret-value`)))
	second := eval[string](c, `document.querySelector('#secret-value').textContent`)
	require.Len(t, second, 32)
	require.NotEqual(t, first, second)
	c.shot("registry")
	require.Eventually(t, func() bool { return !dev.Connected() }, step, 50*time.Millisecond, "the session of the old secret is dropped")
	_, err = device.Connect(ctx, cfg)
	require.Error(t, err, "the old secret is refused")
	cfg.Secret = second
	again, err := device.Connect(ctx, cfg)
	require.NoError(t, err, "the new secret logs in")
	again.Close()
	c.run("secret gone", step, chromedp.Click(chromedp.CSS(`#secret-done`)))
	require.Zero(t, eval[int](c, `document.querySelectorAll('#secret-value').length`), "shown once")
}

// runsPage posts a run's report as loadgen does and finds it on the runs page with its figures and plots.
func (c *console) runsPage() {
	t := c.t
	t0 := time.Now().Add(-2 * time.Minute)
	rate, p50, p99 := make([][2]float64, 90), make([][2]float64, 90), make([][2]float64, 90)
	for i := range rate {
		rate[i] = [2]float64{float64(i), 1000 - 40*math.Abs(math.Sin(float64(i)/9))}
		p50[i], p99[i] = [2]float64{float64(i), 4 + math.Sin(float64(i)/7)}, [2]float64{float64(i), 18 + 6*math.Sin(float64(i)/5)}
	}
	run := runs.Run{Kind: runs.KindLoadgen, Name: "200 devices × 1000 msg/s, QoS 1 (gale)", Pass: true, Started: t0, Finished: t0.Add(90 * time.Second),
		Stats: []runs.Stat{{Name: "achieved rate", Value: 987.5, Unit: "msg/s"}, {Name: "puback p99", Value: 21.3, Unit: "ms"}, {Name: "ledger lost", Value: 0}},
		Plots: []runs.Plot{
			{Title: "Rate", Kind: runs.PlotLine, Unit: "msg/s", Series: []runs.Series{{Name: "acknowledged", Points: rate}}},
			{Title: "PUBACK latency", Kind: runs.PlotLine, Unit: "ms", Series: []runs.Series{{Name: "p50", Points: p50}, {Name: "p99", Points: p99}}},
			{Title: "Ledger", Kind: runs.PlotBar, Series: []runs.Series{{Name: "stored", Points: [][2]float64{{0, 88875}}}, {Name: "lost", Points: [][2]float64{{0, 0}}}}}}}
	var posted runs.Run
	require.Equal(t, http.StatusCreated, c.h.Do(t, http.MethodPost, "/api/v1/runs", run, &posted))
	c.run("runs page", step, chromedp.Navigate(c.base+"/#/runs"), chromedp.WaitVisible(chromedp.CSS(`#runs tr[data-run="`+posted.ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#run [data-plot="Ledger"] svg rect`)))
	require.Equal(t, 3, eval[int](c, `document.querySelectorAll('#run .plots svg').length`))
	require.Equal(t, 3, eval[int](c, `document.querySelectorAll('#run [data-plot="PUBACK latency"] path.series, #run [data-plot="Rate"] path.series').length`))
	require.Contains(t, eval[string](c, `document.querySelector('#run .stats').textContent`), "987.5")
	c.shot("runs")
}

// powers reads the fleet page's turbine table: device key → power (kW) as shown.
const powersJS = `Object.fromEntries([...document.querySelectorAll('#turbines tbody tr')].map(r => [r.dataset.device, r.querySelector('.power').dataset.value]))`

// TestConsoleInBrowser drives the console in chromium against a node with
// the twin fleet: sign-in errors, the fleet with live power, a fault's alert,
// its acknowledgement reaching the API, a curtailment from the command
// form showing in the live view, and a viewer without command buttons.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node with the twin fleet and a browser")
	}
	c := startConsole(t)
	h := c.h
	for _, u := range []map[string]string{
		{"name": "ops", "password": "operator-pass-1", "org": node.DemoOrg, "role": api.RoleOperator},
		{"name": "watcher", "password": "viewer-pass-12", "org": node.DemoOrg, "role": api.RoleViewer},
	} {
		require.Equal(t, http.StatusCreated, h.Do(t, http.MethodPost, "/api/v1/users", u, nil))
	}

	// A wrong password is shown next to the password field.
	c.run("open the console", step, chromedp.Navigate(c.base+"/"), chromedp.WaitVisible(chromedp.CSS(`#user`)))
	c.shot("signin")
	require.False(t, eval[bool](c, `!!document.querySelector('.top:not([hidden])') && document.querySelector('.top').offsetHeight > 0`), "no navigation before sign-in")
	c.run("wrong password", step, chromedp.SendKeys(chromedp.CSS(`#user`), "ops"), chromedp.SendKeys(chromedp.CSS(`#password`), "not-the-password"),
		chromedp.Click(chromedp.CSS(`#signin`)), chromedp.WaitVisible(chromedp.CSS(`label .field-error`)))
	require.Contains(t, eval[string](c, `document.querySelector('label .field-error').textContent`), "wrong user name or password")

	// The fleet: 20 turbines, each with live power.
	// The first load, measured without the browser's cache, from the page to the fleet with its live values.
	_, err := chromedp.Call(c.ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true})
	require.NoError(t, err)
	c.mu.Lock()
	c.bytes = 0
	c.mu.Unlock()
	c.run("reload", step, chromedp.Navigate(c.base+"/"), chromedp.WaitVisible(chromedp.CSS(`#user`)))
	c.signIn("ops", "operator-pass-1")
	powers := waitJS(c, "20 turbines with live power", powersJS, 30*time.Second, func(powers map[string]string) bool {
		n := 0
		for _, p := range powers {
			if p != "" {
				n++
			}
		}
		return len(powers) == 20 && n == 20
	})
	c.mu.Lock()
	firstLoad := c.bytes
	c.mu.Unlock()
	t.Logf("fleet page first load: %.0f bytes over the wire", firstLoad)
	require.Less(t, firstLoad, float64(maxFirstLoad))
	require.Greater(t, firstLoad, 0.0)
	require.Equal(t, 20, eval[int](c, `document.querySelectorAll('.map circle').length`), "every turbine on the farm map")

	// A fault's alert shows; acknowledging it in the page changes it in the API.
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodPost, "/twins/v1/turbines/WT05/faults", map[string]string{"fault": "grid_loss"}, nil))
	c.run("alerts page", step, chromedp.Navigate(c.base+"/#/alerts"))
	rows := waitJS(c, "the grid-frequency alert of WT05", `[...document.querySelectorAll('#alerts tbody tr')].map(r => r.dataset.alert + ' ' + r.textContent)`,
		30*time.Second, func(rows []string) bool {
			for _, r := range rows {
				if strings.Contains(r, "grid-frequency") && strings.Contains(r, "wind-turbine/WT05") {
					return true
				}
			}
			return false
		})
	var id int64
	for _, r := range rows {
		if strings.Contains(r, "grid-frequency") && strings.Contains(r, "wind-turbine/WT05") {
			id, _ = strconv.ParseInt(strings.Fields(r)[0], 10, 64)
		}
	}
	require.NotZero(t, id)
	sel := fmt.Sprintf(`#alerts tr[data-alert="%d"] .ack-open`, id)
	c.run("acknowledge", step, chromedp.Click(chromedp.CSS(sel)), chromedp.WaitVisible(chromedp.CSS(`#ack-comment`)),
		chromedp.SendKeys(chromedp.CSS(`#ack-comment`), "grid operator informed"), chromedp.Click(chromedp.CSS(`#ack-submit`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#alerts tr[data-alert="%d"] td.ack:not(:has(button))`, id))))
	var alerts []api.Alert
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/alerts?rule=grid-frequency", nil, &alerts))
	i := slices.IndexFunc(alerts, func(a api.Alert) bool { return a.ID == id })
	require.GreaterOrEqual(t, i, 0)
	require.Equal(t, "ops", alerts[i].AckedBy)
	require.Equal(t, "grid operator informed", alerts[i].AckComment)
	// The episode's history is one time line on the devices' clock, in order, the acknowledgement on it.
	c.run("episode", step, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#alerts tr[data-alert="%d"] a`, id))),
		chromedp.WaitVisible(chromedp.CSS(`#episode-history li:nth-child(3)`)))
	history := eval[[]string](c, `[...document.querySelectorAll('#episode-history li')].map(li => li.dataset.time + ' ' + li.firstChild.textContent)`)
	require.True(t, slices.IsSortedFunc(history, func(a, b string) int {
		ta, _ := strconv.ParseInt(strings.Fields(a)[0], 10, 64)
		tb, _ := strconv.ParseInt(strings.Fields(b)[0], 10, 64)
		return int(ta - tb)
	}), "history in time order: %v", history)
	last := history[len(history)-1]
	require.Contains(t, last, "acknowledged by ops", "acknowledged after it fired (on the devices' clock): %v", history)
	c.shot("alerts")

	// Curtailing a turbine from the command form drops its power in the live view.
	target, before := "", 0.0
	for k, p := range powers {
		if v, _ := strconv.ParseFloat(p, 64); v > before && k != "WT05" {
			target, before = k, v
		}
	}
	require.Greater(t, before, 1000.0, "a turbine producing over 1 MW to curtail")
	c.run("command form", step, chromedp.Navigate(c.base+"/#/commands/wind-turbine/"+target), chromedp.WaitVisible(chromedp.CSS(`#service`)),
		chromedp.SetValue(chromedp.CSS(`#service`), "setPowerLimit"), chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`document.querySelector('#service').dispatchEvent(new Event('change'))`)(ctx, t)
			return err
		}),
		chromedp.WaitVisible(chromedp.CSS(`input[name=limit]`)), chromedp.SendKeys(chromedp.CSS(`input[name=limit]`), "500"), chromedp.Click(chromedp.CSS(`.run-command`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-status=succeeded]`)))
	c.shot("commands")
	c.run("fleet", step, chromedp.Navigate(c.base+"/#/fleet"))
	powers = waitJS(c, target+" curtailed in the live view", powersJS, 30*time.Second, func(powers map[string]string) bool {
		v, err := strconv.ParseFloat(powers[target], 64)
		return err == nil && v <= 510
	})
	t.Logf("%s: %.0f kW before, %s kW after setPowerLimit 500", target, before, powers[target])
	c.shot("fleet") // with WT05 tripped by the grid loss and the curtailed turbine
	// On a phone's width the page reflows: nothing wider than the screen but scrolling tables.
	c.run("phone width", step, chromedp.EmulateViewport(414, 896), chromedp.Sleep(300*time.Millisecond))
	require.LessOrEqual(t, eval[int](c, `document.documentElement.scrollWidth`), 414)
	c.shot("fleet-phone")
	c.run("desktop width", step, chromedp.EmulateViewport(1440, 1000))

	// The turbine page, reached with the keyboard from the farm map, lists the turbine's events (as the
	// node keeps them from gale.events; the edge's Modbus turbines post none, so one is stored here).
	require.NoError(t, h.Node.Registry.AddDeviceEvents(context.Background(), []api.DeviceEvent{{Type: api.EventTypeDevice, Org: "demo",
		Product: "wind-turbine", Device: target, Event: "fault", Severity: "major", Time: time.Now().UnixMilli(), Params: json.RawMessage(`{"code":4,"text":"yaw misalignment"}`)}}))
	c.run("turbine page", step, chromedp.Focus(chromedp.CSS(`.map .t[data-device="`+target+`"]`)), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`#live tr[data-point="WTUR.W"]`)), chromedp.WaitVisible(chromedp.CSS(`.chart path.line`)), chromedp.WaitVisible(chromedp.CSS(`.chart path.model`)),
		chromedp.WaitVisible(chromedp.CSS(`#device-events li strong`)))
	require.Contains(t, eval[string](c, `document.querySelector('#device-events').textContent`), "yaw misalignment")
	c.shot("turbine")
	c.run("edges", step, chromedp.Navigate(c.base+"/#/edges"), chromedp.WaitVisible(chromedp.CSS(`main table`)))
	waitJS(c, "the gateways' queue depth (GW.QueueDepth, posted by the edge)", `[...document.querySelectorAll('main tbody tr')].map(r => r.querySelector('td.num').textContent)`,
		30*time.Second, func(depths []string) bool {
			return len(depths) == 2 && !slices.Contains(depths, "–")
		})
	c.shot("edges")
	// Rule files are the cluster's: an org's operator sees the rules but reloads none.
	c.run("registry", step, chromedp.Navigate(c.base+"/#/registry"), chromedp.WaitVisible(chromedp.CSS(`main table tbody tr`)))
	require.Zero(t, eval[int](c, `document.querySelectorAll('#rules-reload, .toggle-device').length`), "rule reloads are a cluster account's; only an admin enables and disables devices")

	// A viewer signed in with an API token sees no command button nor acknowledge.
	var viewer struct {
		Token string `json:"token"`
	}
	require.Equal(t, http.StatusCreated, h.Do(t, http.MethodPost, "/api/v1/tokens", map[string]string{"name": "wall", "org": node.DemoOrg, "role": api.RoleViewer}, &viewer))
	c.run("sign out", step, chromedp.Click(chromedp.CSS(`#signout`)))
	c.signIn("", viewer.Token)
	c.run("viewer's turbine page", step, chromedp.Navigate(c.base+"/#/device/wind-turbine/"+target),
		chromedp.WaitVisible(chromedp.CSS(`#live tr[data-point="WTUR.W"]`)))
	require.Zero(t, eval[int](c, `document.querySelectorAll('.run-command, .ack-open').length`))
	c.shot("viewer")
	c.run("viewer's alerts", step, chromedp.Navigate(c.base+"/#/alerts"), chromedp.WaitVisible(chromedp.CSS(`#alerts tbody tr[data-alert]`)))
	require.Zero(t, eval[int](c, `document.querySelectorAll('.run-command, .ack-open, #ack-form').length`))
	c.run("viewer's registry", step, chromedp.Navigate(c.base+"/#/registry"), chromedp.WaitVisible(chromedp.CSS(`main table tbody tr`)))
	require.Zero(t, eval[int](c, `document.querySelectorAll('#rules-reload, .toggle-device, .rotate-secret, #create-device, #import-form').length`))
	c.run("viewer's commands", step, chromedp.Navigate(c.base+"/#/commands"), chromedp.WaitVisible(chromedp.CSS(`main .panel p`)))
	require.Zero(t, eval[int](c, `document.querySelectorAll('.run-command').length`))

	// The cluster admin reloads the rules and may enable and disable devices.
	c.run("sign out", step, chromedp.Click(chromedp.CSS(`#signout`)))
	c.signIn("", h.Token)
	c.run("registry: reload the rules", step, chromedp.Navigate(c.base+"/#/registry"), chromedp.WaitVisible(chromedp.CSS(`#rules-reload`)),
		chromedp.Click(chromedp.CSS(`#rules-reload`)), chromedp.WaitVisible(chromedp.CSS(`main .form-ok`)))
	require.NotZero(t, eval[int](c, `document.querySelectorAll('.toggle-device').length`), "an admin enables and disables devices")
	c.run("routes", step, chromedp.WaitVisible(chromedp.CSS(`#routes tbody tr td`)))
	c.registryAsAdmin()
	c.runsPage()

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.urls {
		require.True(t, strings.HasPrefix(u, c.base+"/") || strings.HasPrefix(u, "data:"), "a request to another host: %s", u)
	}
	require.Empty(t, c.errors, "script errors in the page")
	t.Logf("%d requests, all to %s", len(c.urls), c.base)
}
