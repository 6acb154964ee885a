package broker

import (
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gale-iot/gale/platform/api"
)

// OnSessionEstablished makes the new connection the device's only one, disconnecting an older one.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	s := h.sessions[cl]
	if s == nil {
		h.mu.Unlock()
		return
	}
	key := s.pk + "/" + s.dk
	old := h.byDevice[key]
	h.byDevice[key] = s
	h.mu.Unlock()
	h.m.connects.Inc()
	h.m.sessions.Inc()
	if old != nil && old.client != cl {
		h.log.Info("device logged in again; closing its older connection", "device", key)
		_ = h.server.DisconnectClient(old.client, packets.ErrSessionTakenOver)
	}
	// The device may have been disabled while it logged in.
	h.DeviceChanged(s.pk, s.dk)
}

// OnDisconnect forgets the connection's session.
func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[cl]
	if s == nil {
		return
	}
	delete(h.sessions, cl)
	if key := s.pk + "/" + s.dk; h.byDevice[key] == s {
		delete(h.byDevice, key)
		h.m.sessions.Dec()
	}
	for sub := range s.subs {
		if h.subOwner[sub] == s {
			delete(h.subOwner, sub)
		}
	}
}

// online reports whether device "pk/dk" has a session here, directly or through its gateway.
func (h *hook) online(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byDevice[key] != nil || h.subOwner[key] != nil
}

// OnSubscribed notes that the device can now receive replies, and tells the
// listener which devices now receive their service calls (so queued commands
// are sent only once someone listens).
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	s := h.session(cl)
	if s == nil {
		return
	}
	s.subscribed.Store(true)
	devices := [][2]string{{s.pk, s.dk}}
	h.mu.Lock()
	for sub := range s.subs {
		pk, dk, _ := strings.Cut(sub, "/")
		devices = append(devices, [2]string{pk, dk})
	}
	h.mu.Unlock()
	for _, d := range devices {
		for _, f := range pk.Filters {
			if topicMatch(f.Filter, api.ServiceTopic(d[0], d[1], "x")) {
				h.listener.DeviceOnline(d[0], d[1])
				break
			}
		}
	}
}

func (h *hook) session(cl *mqtt.Client) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[cl]
}

// DeviceChanged re-reads device (pk, dk) from the registry after a change
// (local or from another node): a disabled or deleted device, or one given
// a new secret, loses its session at once (without its Will), and a
// sub-device that is disabled, deleted, given a new secret or moved to
// another gateway is logged out of its gateway's session, whose
// subscriptions to it are removed.
func (h *hook) DeviceChanged(pk, dk string) {
	key := pk + "/" + dk
	d, ok := h.devices.Device(pk, dk)
	h.mu.Lock()
	direct, gw := h.byDevice[key], h.subOwner[key]
	rotated := ok && (direct != nil && direct.secret != d.Secret || gw != nil && gw.subs[key] != d.Secret)
	h.mu.Unlock()
	if !ok || !d.Enabled || rotated {
		if direct != nil {
			h.m.connectRejects.WithLabelValues("session_revoked").Inc()
			h.log.Info("device disabled, deleted or given a new secret; dropping its session", "device", key)
			// A revoked device's Will is not published either. The connection
			// is closed without a DISCONNECT, which could block on a client
			// that does not read.
			atomic.StoreUint32(&direct.client.Properties.Will.Flag, 0)
			direct.client.Stop(packets.ErrNotAuthorized)
		}
		if gw != nil {
			h.logoutSub(gw, key)
		}
		return
	}
	if gw != nil && (d.GatewayProductKey != gw.pk || d.GatewayDeviceKey != gw.dk) {
		h.logoutSub(gw, key)
	}
}

// logoutSub logs sub-device key ("pk/dk") out of gateway session gw and
// removes gw's subscriptions to the sub-device's topics.
func (h *hook) logoutSub(gw *session, key string) {
	h.mu.Lock()
	delete(gw.subs, key)
	if h.subOwner[key] == gw {
		delete(h.subOwner, key)
	}
	h.mu.Unlock()
	pk, dk, _ := strings.Cut(key, "/")
	prefix := api.DevicePrefix(pk, dk)
	for filter := range gw.client.State.Subscriptions.GetAll() {
		if strings.HasPrefix(filter, prefix) {
			gw.client.State.Subscriptions.Delete(filter)
			if h.server.Topics.Unsubscribe(filter, gw.client.ID) {
				atomic.AddInt64(&h.server.Info.Subscriptions, -1)
			}
		}
	}
}
