package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
)

// Device A signs a login with device B's client id (its id part and
// timestamp): it must not take over B's session or subscriptions.
func TestSessionIsBoundToTheDevice(t *testing.T) {
	r := startRig(t, nil)
	a, b := r.device(t, "a"), r.device(t, "b")
	ts := time.Now().UnixMilli()
	bCred := api.Sign("shared", testProduct, "b", b.Secret, ts)
	bc, err := r.dialCred(t, bCred, func(o *paho.ClientOptions) { o.SetCleanSession(false) })
	require.NoError(t, err)
	calls := subscribe(t, bc, api.DevicePrefix(testProduct, "b")+"#")

	aCred := api.Sign("shared", testProduct, "a", a.Secret, ts)
	require.Equal(t, bCred.ClientID, aCred.ClientID, "the same client id string")
	ac, err := r.dialCred(t, aCred, func(o *paho.ClientOptions) { o.SetCleanSession(false) })
	require.NoError(t, err)
	require.True(t, ac.IsConnectionOpen())

	// B keeps its connection and its subscriptions.
	time.Sleep(100 * time.Millisecond) // let a wrongful take-over show
	require.True(t, bc.IsConnectionOpen(), "device b lost its session to device a")
	require.NoError(t, r.b.Publish(api.ServiceTopic(testProduct, "b", "stop"), []byte(`{"id":"1"}`), 1))
	select {
	case m := <-calls:
		require.JSONEq(t, `{"id":"1"}`, string(m))
	case <-time.After(5 * time.Second):
		t.Fatal("device b no longer receives its service calls")
	}
	for _, id := range []string{sessionID(testProduct, "a"), sessionID(testProduct, "b")} {
		_, ok := r.b.server.Clients.Get(id)
		require.True(t, ok, "session %s", id)
	}

	// B's own new login takes over its own session.
	b2, err := r.dial(t, b, "other", nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !bc.IsConnectionOpen() }, 5*time.Second, 10*time.Millisecond)
	require.True(t, b2.IsConnectionOpen())
	require.True(t, ac.IsConnectionOpen())
}

func TestLongClientIDIsRefused(t *testing.T) {
	r := startRig(t, nil)
	d := r.device(t, "d1")
	_, err := r.dial(t, d, strings.Repeat("x", 1000), nil)
	require.Error(t, err)
	require.Equal(t, 1.0, r.rejected(true, "client_id_too_long"))
	_, err = r.dial(t, d, strings.Repeat("x", 60), nil)
	require.NoError(t, err, "a client id within the cap is fine")
	require.NotContains(t, r.logs.String(), strings.Repeat("x", 300), "the log carries no long client id")
}

// A signed login is accepted once; the SDK's reconnects sign afresh, also
// several within one millisecond.
func TestSignedLoginIsOneTime(t *testing.T) {
	r := startRig(t, nil)
	d := r.device(t, "d1")
	cred := api.Sign("d1", testProduct, "d1", d.Secret, time.Now().UnixMilli())
	first, err := r.dialCred(t, cred, nil)
	require.NoError(t, err)
	first.Disconnect(0)
	_, err = r.dialCred(t, cred, nil)
	require.Error(t, err, "a replayed login must be refused")
	require.Equal(t, 1.0, r.rejected(true, "replay"))

	// A managed client whose clock stands still signs a new timestamp per login.
	frozen := time.Now().Add(time.Second) // not the millisecond cred was signed at
	c := device.NewClient(device.Config{Broker: r.b.Addr(), ProductKey: testProduct, DeviceKey: "d1", Secret: d.Secret,
		Now: func() time.Time { return frozen }, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}, r.b.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	for i := uint64(1); i <= 3; i++ {
		var cl *mqttClient
		require.Eventually(t, func() bool {
			var ok bool
			cl, ok = r.b.server.Clients.Get(sessionID(testProduct, "d1"))
			return c.Stats().Connects == i && ok && !cl.Closed()
		}, 10*time.Second, 5*time.Millisecond, "connect %d", i)
		cl.Stop(nil) // drop it: the client reconnects
	}
	require.Equal(t, 1.0, r.rejected(true, "replay"), "no reconnect was refused")
}

func TestOnceCache(t *testing.T) {
	c := newOnceCache(time.Minute)
	c.perDevice = 3
	now := time.Now()
	ms := now.UnixMilli()
	require.True(t, c.use("d", "s1", ms-4, now))
	require.False(t, c.use("d", "s1", ms-4, now), "replay")
	require.True(t, c.use("e", "s1", ms-4, now), "per device")
	for i, s := range []string{"s2", "s3", "s4"} {
		require.True(t, c.use("d", s, ms-3+int64(i), now))
	}
	// s1 was evicted, but its timestamp is at the floor: still refused.
	require.False(t, c.check("d", "s1", ms-4))
	require.False(t, c.use("d", "s1", ms-4, now))
	require.True(t, c.use("d", "s5", ms, now))
	// After the window the entries go, and a stale timestamp is refused by the skew check instead.
	later := now.Add(2 * time.Minute)
	require.True(t, c.use("f", "x", later.UnixMilli(), later))
	c.mu.Lock()
	require.NotContains(t, c.devices, "d")
	c.mu.Unlock()
}

func TestFlapDetector(t *testing.T) {
	m := newMetrics(prometheusRegistry())
	cfg := Backoff{Window: time.Minute, MaxFailuresPerIP: 3, MaxFailuresPerDevice: 2, BanTime: time.Second, MaxBanTime: 4 * time.Second}
	d := newFlapDetector(cfg, m)
	now := time.Unix(1_000_000, 0)
	d.fail("1.2.3.4", "p/d", "bad_signature", now)
	_, banned := d.banned(deviceKey("p/d"), now)
	require.False(t, banned)
	d.fail("1.2.3.4", "p/d", "bad_signature", now)
	until, banned := d.banned(deviceKey("p/d"), now)
	require.True(t, banned)
	require.Equal(t, now.Add(time.Second), until)
	_, banned = d.banned(ipKey("1.2.3.4"), now)
	require.False(t, banned, "two failures do not ban the address")
	d.fail("1.2.3.4", "", "unknown_device", now)
	_, banned = d.banned(ipKey("1.2.3.4"), now)
	require.True(t, banned)

	// Bans double, up to the maximum.
	for i, want := range []time.Duration{2 * time.Second, 4 * time.Second, 4 * time.Second} {
		now = now.Add(time.Duration(i+1) * time.Second)
		d.fail("5.6.7.8", "p/d", "bad_signature", now)
		d.fail("5.6.7.8", "p/d", "bad_signature", now)
		until, banned = d.banned(deviceKey("p/d"), now)
		require.True(t, banned)
		require.Equal(t, now.Add(want), until, "ban %d", i+2)
	}
	// Quiet for the maximum ban time: it starts over.
	now = now.Add(time.Minute)
	d.fail("5.6.7.8", "p/d", "bad_signature", now)
	d.fail("5.6.7.8", "p/d", "bad_signature", now)
	until, _ = d.banned(deviceKey("p/d"), now)
	require.Equal(t, now.Add(time.Second), until)
}

// Logins that keep failing ban the device, and then the address, for a
// while: even a correct signature is refused unchecked.
func TestLoginBackoff(t *testing.T) {
	r := startRig(t, func(c *Config) {
		c.LoginBackoff = Backoff{Window: time.Minute, MaxFailuresPerIP: 6, MaxFailuresPerDevice: 3, BanTime: 700 * time.Millisecond, MaxBanTime: time.Minute}
	})
	d, other := r.device(t, "d1"), r.device(t, "d2")
	wrong := d
	wrong.Secret = "wrong"
	for range 3 {
		_, err := r.dial(t, wrong, "", nil)
		require.Error(t, err)
	}
	require.Equal(t, 3.0, r.rejected(true, "bad_signature"))
	_, err := r.dial(t, d, "", nil)
	require.Error(t, err, "the banned device is refused even with its secret")
	require.Equal(t, 1.0, r.rejected(true, "banned_device"))
	_, err = r.dial(t, other, "", nil)
	require.NoError(t, err, "another device from the address still logs in")
	require.Eventually(t, func() bool {
		_, err := r.dial(t, d, "", nil)
		return err == nil
	}, 5*time.Second, 100*time.Millisecond, "the ban ends")

	// Unknown devices count against the address.
	ghost := api.Device{ProductKey: testProduct, DeviceKey: "ghost", Secret: "x"}
	for range 3 {
		_, err := r.dial(t, ghost, "", nil)
		require.Error(t, err)
	}
	_, err = r.dial(t, other, "", nil)
	require.Error(t, err, "the banned address is refused")
	require.GreaterOrEqual(t, r.rejected(true, "banned_ip"), 1.0)
}
