package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"golang.org/x/time/rate"

	"github.com/gale-iot/gale/platform/bus"
)

// hook implements Gale's broker on mochi's hook points, one file per
// concern: auth.go (login, replay, back-off), acl.go (the one ACL),
// session.go (sessions bound to devices, revocation), ingest.go (requests
// to Kafka) and subdevice.go (gateways).
type hook struct {
	mqtt.HookBase
	cfg      Config
	server   *mqtt.Server
	devices  Devices
	producer bus.Producer // Send: the broker never waits for Kafka on a device's read goroutine
	// trySend is the producer's TrySend, when it has one (bus.AsyncProducer):
	// a message taken by it needs no timer for the wait.
	trySend func(bus.Message, func(error)) bool
	log     *slog.Logger
	m       *metrics
	now     func() time.Time

	listener Listener
	// replySlots bounds the command replies being handled at once.
	replySlots chan struct{}
	// drains hands a session with acknowledgements to write to a waiting
	// drainer; one waits drainIdle for it.
	drains    chan *session
	drainIdle time.Duration
	// once remembers the signatures accepted within their window.
	once *onceCache
	// flaps bans addresses and devices that fail too many logins.
	flaps *flapDetector

	mu       sync.Mutex
	sessions map[*mqtt.Client]*session
	byDevice map[string]*session // "pk/dk" → the device's current session
	subOwner map[string]*session // "pk/dk" of a logged-in sub-device → its gateway's session
	bufs     sync.Pool
}

// session is an authenticated device connection.
type session struct {
	client  *mqtt.Client
	pk, dk  string
	limiter *rate.Limiter
	// secret is the one the device logged in with: a rotation drops the session.
	secret string
	// subs are the sub-devices logged in through this gateway session
	// ("pk/dk"), each with the secret it logged in with; guarded by hook.mu.
	subs map[string]string
	// subscribed is set once the device subscribed to anything: a device
	// that never subscribed cannot receive replies, so none are published.
	subscribed atomic.Bool
	// pipe holds the connection's requests waiting for Kafka.
	pipe *pipeline
}

func newHook(cfg Config, server *mqtt.Server, devices Devices, producer bus.Producer, log *slog.Logger, m *metrics) *hook {
	h := &hook{
		cfg: cfg, server: server, devices: devices, producer: producer, log: log, m: m, now: time.Now,
		sessions: map[*mqtt.Client]*session{},
		byDevice: map[string]*session{},
		subOwner: map[string]*session{},
		listener: nopListener{},
		// Command replies are rare: a few dozen at once is plenty.
		replySlots: make(chan struct{}, 64),
		drains:     make(chan *session),
		drainIdle:  drainIdle,
		bufs:       sync.Pool{New: func() any { return new([]byte) }},
	}
	window := cfg.LoginSkew
	if window == 0 {
		window = 24 * time.Hour
	}
	if t, ok := producer.(interface {
		TrySend(bus.Message, func(error)) bool
	}); ok {
		h.trySend = t.TrySend
	}
	h.once = newOnceCache(window)
	h.flaps = newFlapDetector(cfg.LoginBackoff, m)
	return h
}

// ID names the hook.
func (h *hook) ID() string { return "gale" }

// Provides lists the hook points used. mochi asks it for every hook point
// of every packet, read and written.
func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed:
		return true
	}
	return false
}
