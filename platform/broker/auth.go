package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

	"github.com/gale-iot/gale/platform/api"
)

// OnConnectAuthenticate checks the EnOS signature of a device login. An
// accepted client's mochi session is bound to its device (see sessionID)
// and its connection's pre-login limits are lifted.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	ip := remoteHost(cl.Net.Remote)
	s, device, reason, err := h.authenticate(cl, pk, ip)
	if err != nil {
		h.m.connectRejects.WithLabelValues(reason).Inc()
		h.flaps.fail(ip, device, reason, h.now())
		level := slog.LevelInfo
		if reason == "banned_ip" || reason == "banned_device" {
			level = slog.LevelDebug // a banned flood would flood the log
		}
		h.log.Log(context.Background(), level, "connect refused", "client", pk.Connect.ClientIdentifier, "remote", cl.Net.Remote, "reason", reason, "err", err)
		return false
	}
	// mochi keys sessions by client id; a client id chosen by the client
	// would let one device take over another's session. The id is the
	// device's own, so a device can only ever take over its own session.
	cl.ID = sessionID(s.pk, s.dk)
	h.mu.Lock()
	h.sessions[cl] = s
	h.mu.Unlock()
	if g, ok := cl.Net.Conn.(*guardConn); ok {
		g.lift()
	}
	return true
}

// sessionID is the mochi client id of device (pk, dk)'s session.
func sessionID(pk, dk string) string { return pk + "/" + dk }

// authenticate checks a login; on failure it returns the counted reason and
// the device the login named ("" when none could be read), for the back-off.
func (h *hook) authenticate(cl *mqtt.Client, pk packets.Packet, ip string) (*session, string, string, error) {
	if n := len(pk.Connect.ClientIdentifier); n > h.cfg.MaxClientID {
		return nil, "", "client_id_too_long", fmt.Errorf("client id of %d bytes is longer than %d", n, h.cfg.MaxClientID)
	}
	now := h.now()
	if until, ok := h.flaps.banned(ipKey(ip), now); ok {
		return nil, "", "banned_ip", fmt.Errorf("address %s failed too many logins; refused until %s", ip, until.Format(time.RFC3339))
	}
	login, err := api.ParseLogin(pk.Connect.ClientIdentifier, string(pk.Connect.Username))
	if err != nil {
		return nil, "", "malformed", err
	}
	device := login.ProductKey + "/" + login.DeviceKey
	if until, ok := h.flaps.banned(deviceKey(device), now); ok {
		return nil, "", "banned_device", fmt.Errorf("device %s failed too many logins; refused until %s", device, until.Format(time.RFC3339))
	}
	dev, ok := h.devices.Device(login.ProductKey, login.DeviceKey)
	switch {
	case !ok:
		return nil, "", "unknown_device", fmt.Errorf("device %s is not registered", device)
	case !dev.Enabled:
		return nil, device, "disabled", fmt.Errorf("device %s is disabled", device)
	case !login.Verify(string(pk.Connect.Password), dev.Secret):
		return nil, device, "bad_signature", errors.New("signature does not match")
	}
	if err := h.fresh(login.Timestamp, now); err != nil {
		return nil, device, "stale_timestamp", err
	}
	s := &session{
		client: cl, pk: login.ProductKey, dk: login.DeviceKey, secret: dev.Secret, subs: map[string]string{},
		limiter: rate.NewLimiter(rate.Limit(h.cfg.RateLimit), h.cfg.Burst),
		pipe:    newPipeline(h.cfg.MaxInFlight),
	}
	s.pipe.onTimeout = func() { h.drain(s) }
	if pk.Connect.WillFlag && pk.Connect.WillRetain {
		return nil, device, "will_retain", errors.New("a retained Will is not accepted")
	}
	if pk.Connect.WillFlag && !h.mayPublish(s, pk.Connect.WillTopic) {
		return nil, device, "will_acl", fmt.Errorf("will topic %q is not one the device may publish on", pk.Connect.WillTopic)
	}
	if !h.once.use(device, string(pk.Connect.Password), login.Timestamp, now) {
		return nil, device, "replay", errors.New("this signed login was used before")
	}
	return s, "", "", nil
}

// fresh checks a signing timestamp (Unix ms) is within the login skew of now.
func (h *hook) fresh(ts int64, now time.Time) error {
	if h.cfg.LoginSkew <= 0 {
		return nil
	}
	if skew := now.Sub(time.UnixMilli(ts)).Abs(); skew > h.cfg.LoginSkew {
		return fmt.Errorf("timestamp %d is %s from the broker's clock, more than %s", ts, skew.Round(time.Second), h.cfg.LoginSkew)
	}
	return nil
}

// freshString is fresh for a timestamp in decimal text (as sub-devices sign it).
func (h *hook) freshString(ts string, now time.Time) (int64, error) {
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || t <= 0 {
		return 0, fmt.Errorf("timestamp %q is not Unix milliseconds", cut(ts))
	}
	return t, h.fresh(t, now)
}

func remoteHost(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// onceCache remembers, per device, the signatures accepted within their
// window, so each is accepted once. Memory is bounded: at most perDevice
// signatures are kept per device; evicting one raises the device's floor,
// and a signature timestamped at or below the floor is refused, so an
// evicted signature still cannot be replayed. Entries older than the
// window are dropped (such a timestamp is refused as stale anyway).
type onceCache struct {
	window    time.Duration
	perDevice int

	mu        sync.Mutex
	devices   map[string]*onceSet
	lastSweep time.Time
}

type onceSet struct {
	seen  map[string]int64 // signature → its timestamp (Unix ms)
	floor int64
}

func newOnceCache(window time.Duration) *onceCache {
	return &onceCache{window: window, perDevice: 64, devices: map[string]*onceSet{}}
}

// check reports whether signature sig of device, signed at ts, is unused.
func (c *onceCache) check(device, sig string, ts int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := c.devices[device]
	if set == nil {
		return true
	}
	_, seen := set.seen[sig]
	return !seen && ts > set.floor
}

// use marks signature sig of device, signed at ts, as used; it reports
// false if it was used before (or is at or below the device's floor).
func (c *onceCache) use(device, sig string, ts int64, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastSweep) > c.window/4 {
		c.sweep(now)
	}
	set := c.devices[device]
	if set == nil {
		set = &onceSet{seen: map[string]int64{}}
		c.devices[device] = set
	}
	if _, seen := set.seen[sig]; seen || ts <= set.floor {
		return false
	}
	set.seen[sig] = ts
	if len(set.seen) > c.perDevice {
		oldest, at := "", int64(0)
		for s, t := range set.seen {
			if oldest == "" || t < at {
				oldest, at = s, t
			}
		}
		delete(set.seen, oldest)
		set.floor = max(set.floor, at)
	}
	return true
}

func (c *onceCache) sweep(now time.Time) {
	c.lastSweep = now
	expired := now.Add(-c.window).UnixMilli()
	for d, set := range c.devices {
		for s, t := range set.seen {
			if t < expired {
				delete(set.seen, s)
			}
		}
		if len(set.seen) == 0 && set.floor < expired {
			delete(c.devices, d)
		}
	}
}

// flapDetector bans remote addresses and devices that fail too many logins
// (EMQX's flapping detection): MaxFailures within Window bans for BanTime,
// doubling with each further ban up to MaxBanTime; a key that stays quiet
// for MaxBanTime starts over. While banned, logins are refused without
// checking their signature. A device's ban can be caused by anyone who
// knows its keys; it slows the device's login for the ban time, and that is
// the price of refusing to check signatures at full speed.
type flapDetector struct {
	cfg Backoff
	m   *metrics

	mu        sync.Mutex
	keys      map[string]*flap
	lastSweep time.Time
}

type flap struct {
	failures    int
	windowStart time.Time
	last        time.Time
	bans        int
	until       time.Time
}

// maxFlapKeys bounds the detector's memory; beyond it new keys are not tracked.
const maxFlapKeys = 100_000

func newFlapDetector(cfg Backoff, m *metrics) *flapDetector {
	return &flapDetector{cfg: cfg, m: m, keys: map[string]*flap{}}
}

func ipKey(ip string) string         { return "ip " + ip }
func deviceKey(device string) string { return "device " + device }

// banned reports whether key is banned at now, and until when.
func (d *flapDetector) banned(key string, now time.Time) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.keys[key]
	if f == nil || !now.Before(f.until) {
		return time.Time{}, false
	}
	return f.until, true
}

// fail records a failed login from ip for device ("" when unknown).
func (d *flapDetector) fail(ip, device, reason string, now time.Time) {
	if reason == "banned_ip" || reason == "banned_device" {
		return // refused unchecked: not a new failure
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if now.Sub(d.lastSweep) > d.cfg.Window {
		d.sweep(now)
	}
	d.record(ipKey(ip), "ip", d.cfg.MaxFailuresPerIP, now)
	if device != "" {
		d.record(deviceKey(device), "device", d.cfg.MaxFailuresPerDevice, now)
	}
}

func (d *flapDetector) record(key, scope string, maxFailures int, now time.Time) {
	if maxFailures <= 0 {
		return
	}
	f := d.keys[key]
	if f == nil {
		if len(d.keys) >= maxFlapKeys {
			return
		}
		f = &flap{}
		d.keys[key] = f
	}
	if now.Sub(f.last) > d.cfg.MaxBanTime {
		f.bans = 0
	}
	f.last = now
	if now.Sub(f.windowStart) > d.cfg.Window {
		f.failures, f.windowStart = 0, now
	}
	if f.failures++; f.failures < maxFailures {
		return
	}
	ban := d.cfg.BanTime << min(f.bans, 20)
	if ban > d.cfg.MaxBanTime || ban <= 0 {
		ban = d.cfg.MaxBanTime
	}
	f.bans++
	f.failures, f.until = 0, now.Add(ban)
	d.m.bans.WithLabelValues(scope).Inc()
}

func (d *flapDetector) sweep(now time.Time) {
	d.lastSweep = now
	for k, f := range d.keys {
		if now.After(f.until) && now.Sub(f.last) > d.cfg.MaxBanTime {
			delete(d.keys, k)
		}
	}
}
