package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gale-iot/gale/platform/api"
)

// Topology is the registry write the broker needs for thing.topo.add.
type Topology interface {
	SetGateway(ctx context.Context, pk, dk, gwPK, gwDK string) error
}

// subDevices handles a gateway's topo/add, combine/login[/batch] and combine/logout,
// answering on the reply topic.
func (h *hook) subDevices(s *session, topic api.Topic, name string, req api.Request) {
	switch topic.Kind {
	case api.KindTopoAdd:
		var subs []api.SubDeviceAuth
		if err := json.Unmarshal(req.Params, &subs); err != nil {
			h.reject(s, name, req.ID, api.CodeBadRequest, "bad_json", "params must be an array of signed sub-devices: "+err.Error())
			return
		}
		var added []api.SubDeviceRef
		for _, sub := range subs {
			if _, err := h.verifySub(sub); err != nil {
				h.reject(s, name, req.ID, api.CodeUnauthorized, "bad_subdevice", err.Error())
				return
			}
			if err := h.devices.SetGateway(context.Background(), sub.ProductKey, sub.DeviceKey, s.pk, s.dk); err != nil {
				h.reject(s, name, req.ID, api.CodeInternal, "topology", err.Error())
				return
			}
			added = append(added, api.SubDeviceRef{ProductKey: sub.ProductKey, DeviceKey: sub.DeviceKey})
		}
		h.m.messages.WithLabelValues("topo_add").Inc()
		h.replyData(s, name, req.ID, api.CodeOK, "", added)
	case api.KindSubLogin:
		var sub api.SubDeviceAuth
		if err := json.Unmarshal(req.Params, &sub); err != nil {
			h.reject(s, name, req.ID, api.CodeBadRequest, "bad_json", "params: "+err.Error())
			return
		}
		if err := h.login(s, sub); err != nil {
			h.reject(s, name, req.ID, api.CodeUnauthorized, "bad_subdevice", err.Error())
			return
		}
		h.replyData(s, name, req.ID, api.CodeOK, "", api.SubDeviceRef{ProductKey: sub.ProductKey, DeviceKey: sub.DeviceKey})
	case api.KindSubLoginBatch:
		var batch api.SubDeviceLoginBatch
		if err := json.Unmarshal(req.Params, &batch); err != nil {
			h.reject(s, name, req.ID, api.CodeBadRequest, "bad_json", "params: "+err.Error())
			return
		}
		res := api.SubDeviceLoginResult{Logged: []api.SubDeviceRef{}, Failed: []api.SubDeviceRef{}}
		for _, sub := range batch.SubDevices {
			ref := api.SubDeviceRef{ProductKey: sub.ProductKey, DeviceKey: sub.DeviceKey}
			if err := h.login(s, sub); err != nil {
				ref.Message = err.Error()
				res.Failed = append(res.Failed, ref)
				h.m.rejects.WithLabelValues("bad_subdevice").Inc()
				continue
			}
			res.Logged = append(res.Logged, ref)
		}
		h.replyData(s, name, req.ID, api.CodeOK, "", res)
	case api.KindSubLogout:
		var ref api.SubDeviceRef
		if err := json.Unmarshal(req.Params, &ref); err != nil {
			h.reject(s, name, req.ID, api.CodeBadRequest, "bad_json", "params: "+err.Error())
			return
		}
		key := ref.ProductKey + "/" + ref.DeviceKey
		h.mu.Lock()
		delete(s.subs, key)
		if h.subOwner[key] == s {
			delete(h.subOwner, key)
		}
		h.mu.Unlock()
		h.replyData(s, name, req.ID, api.CodeOK, "", ref)
	}
}

// verifySub checks a sub-device exists, is enabled and the gateway signed it with its secret.
func (h *hook) verifySub(sub api.SubDeviceAuth) (api.Device, error) {
	d, ok := h.devices.Device(sub.ProductKey, sub.DeviceKey)
	switch {
	case !ok:
		return d, fmt.Errorf("sub-device %s/%s is not registered", sub.ProductKey, sub.DeviceKey)
	case !d.Enabled:
		return d, fmt.Errorf("sub-device %s/%s is disabled", sub.ProductKey, sub.DeviceKey)
	case !sub.Verify(d.Secret):
		return d, fmt.Errorf("sub-device %s/%s: signature does not match", sub.ProductKey, sub.DeviceKey)
	}
	return d, nil
}

// login logs sub in through gateway session s; the topology must place it behind that gateway.
func (h *hook) login(s *session, sub api.SubDeviceAuth) error {
	d, err := h.verifySub(sub)
	if err != nil {
		return err
	}
	if d.GatewayProductKey != s.pk || d.GatewayDeviceKey != s.dk {
		return errors.New("sub-device " + sub.ProductKey + "/" + sub.DeviceKey + " is not in this gateway's topology (thing.topo.add it first)")
	}
	key := sub.ProductKey + "/" + sub.DeviceKey
	h.mu.Lock()
	s.subs[key] = true
	h.subOwner[key] = s
	h.mu.Unlock()
	h.m.messages.WithLabelValues("sub_login").Inc()
	return nil
}

// allowed reports whether session s may use topic: its own /sys/{pk}/{dk}/ and
// /ext/session/{pk}/{dk}/, and the /sys/ topics of its logged-in sub-devices.
func (h *hook) allowed(s *session, topic string) bool {
	if strings.HasPrefix(topic, api.DevicePrefix(s.pk, s.dk)) || strings.HasPrefix(topic, api.SessionPrefix(s.pk, s.dk)) {
		return true
	}
	rest, ok := strings.CutPrefix(topic, "/sys/")
	if !ok {
		return false
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 3 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.subs[parts[0]+"/"+parts[1]]
}
