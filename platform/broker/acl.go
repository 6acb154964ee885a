package broker

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/gale-iot/gale/platform/api"
)

// OnACLCheck is the ACL of PUBLISH (write) and SUBSCRIBE (read): mayPublish
// and maySubscribe. A Will passes mayPublish when the client connects (see
// authenticate), and nothing a device sends is ever retained (a retained
// Will is refused at login, a retained PUBLISH by OnPublish), so every path
// by which a client makes the broker publish passes the same rule.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := h.session(cl)
	if s == nil {
		return false
	}
	if write && h.mayPublish(s, topic) || !write && h.maySubscribe(s, topic) {
		return true
	}
	reason := "acl_subscribe"
	if write {
		reason = "acl_publish"
	}
	h.m.rejects.WithLabelValues(reason).Inc()
	h.log.Info("acl refused", "device", s.pk+"/"+s.dk, "topic", topic, "write", write)
	return false
}

// mayPublish is the one rule for every topic a device can make the broker
// publish on (PUBLISH and Will). Topics split into uplink, which devices
// publish, and downlink, which only the platform publishes:
//
//   - uplink: the requests of the device protocol (measurepoint post,
//     resume and resume/batch, event post, attribute update and query) and
//     the replies to service calls (thing/service/{id}_reply);
//   - downlink: service calls (thing/service/{id}) and the replies to
//     uplink requests (every other `_reply`).
//
// A device may publish uplink topics under its own /sys/{pk}/{dk}/, its
// gateway requests (thing/topo/add under /sys/{pk}/{dk}/ and
// combine/login, login/batch and logout under /ext/session/{pk}/{dk}/), and,
// as a gateway, the uplink topics of the sub-devices logged in through this
// session (but not their topo/add or /ext/session/: a sub-device is no
// gateway). It may never publish a downlink topic, its own or a
// sub-device's: a device that could would forge platform traffic (a service
// call that stops a turbine, a reply that tells a sub-device its data was
// taken). Anything that is not a topic of the device protocol is refused.
func (h *hook) mayPublish(s *session, topic string) bool {
	if strings.ContainsAny(topic, "+#") {
		return false
	}
	t, err := api.ParseTopic(topic)
	if err != nil {
		return false
	}
	if t.Reply != (t.Kind == api.KindServiceCall) {
		return false // a service call, or a reply to an uplink request: downlink
	}
	own := t.ProductKey == s.pk && t.DeviceKey == s.dk
	switch t.Kind {
	case api.KindTopoAdd, api.KindSubLogin, api.KindSubLoginBatch, api.KindSubLogout:
		return own
	}
	if own {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.subs[t.ProductKey+"/"+t.DeviceKey] != ""
}

// maySubscribe lets a device subscribe only to filters within its own
// /sys/{pk}/{dk}/ and /ext/session/{pk}/{dk}/, and within the /sys/ topics of
// the sub-devices logged in through this session.
func (h *hook) maySubscribe(s *session, filter string) bool {
	if strings.HasPrefix(filter, api.DevicePrefix(s.pk, s.dk)) || strings.HasPrefix(filter, api.SessionPrefix(s.pk, s.dk)) {
		return true
	}
	rest, ok := strings.CutPrefix(filter, "/sys/")
	if !ok {
		return false
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 3 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.subs[parts[0]+"/"+parts[1]] != ""
}

// topicMatch reports whether MQTT filter (with + and #) matches topic.
func topicMatch(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) || f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}
