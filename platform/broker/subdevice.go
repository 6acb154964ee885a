package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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
		// All entries are checked before any is used or applied, so a
		// refused request changes nothing and can be sent again in parts.
		stamps := make([]int64, len(subs))
		for i, sub := range subs {
			ts, reason, err := h.verifySub(s, sub, purposeTopo)
			if err != nil {
				h.reject(s, name, req.ID, api.CodeUnauthorized, reason, err.Error())
				return
			}
			stamps[i] = ts
		}
		now := h.now()
		var added []api.SubDeviceRef
		for i, sub := range subs {
			if !h.once.use(sub.ProductKey+"/"+sub.DeviceKey, purposeTopo+sub.Sign, stamps[i], now) {
				h.reject(s, name, req.ID, api.CodeUnauthorized, "replay", "sub-device "+sub.ProductKey+"/"+sub.DeviceKey+": signature used before")
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
		if reason, err := h.login(s, sub); err != nil {
			h.reject(s, name, req.ID, api.CodeUnauthorized, reason, err.Error())
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
			if reason, err := h.login(s, sub); err != nil {
				ref.Message = err.Error()
				res.Failed = append(res.Failed, ref)
				h.m.rejects.WithLabelValues(reason).Inc()
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
		h.logoutSub(s, ref.ProductKey+"/"+ref.DeviceKey)
		h.replyData(s, name, req.ID, api.CodeOK, "", ref)
	}
}

// What a sub-device signature is used for. A signature is accepted once
// per purpose within its window: a gateway signs a sub-device once and
// sends it in thing.topo.add and then in combine/login (as the EnOS SDKs
// do), and neither request can be replayed.
const (
	purposeTopo  = "topo "
	purposeLogin = "login "
)

// verifySub checks a sub-device exists and is enabled, that its entry is
// signed with its secret at a fresh timestamp not used before for purpose,
// and that it belongs to the org of gateway session s. It returns the
// timestamp, or the counted reason of a refusal.
func (h *hook) verifySub(s *session, sub api.SubDeviceAuth, purpose string) (int64, string, error) {
	key := sub.ProductKey + "/" + sub.DeviceKey
	d, ok := h.devices.Device(sub.ProductKey, sub.DeviceKey)
	switch {
	case !ok:
		return 0, "bad_subdevice", fmt.Errorf("sub-device %s is not registered", cut(key))
	case !d.Enabled:
		return 0, "bad_subdevice", fmt.Errorf("sub-device %s is disabled", key)
	case !sub.Verify(d.Secret):
		return 0, "bad_subdevice", fmt.Errorf("sub-device %s: signature does not match", key)
	}
	ts, err := h.freshString(sub.Timestamp, h.now())
	if err != nil {
		return 0, "stale_timestamp", fmt.Errorf("sub-device %s: %w", key, err)
	}
	if !h.once.check(key, purpose+sub.Sign, ts) {
		return 0, "replay", fmt.Errorf("sub-device %s: signature used before", key)
	}
	if !h.sameOrg(s, d) {
		return 0, "subdevice_org", fmt.Errorf("sub-device %s belongs to another org than this gateway", key)
	}
	return ts, "", nil
}

// login logs sub in through gateway session s; the topology must place it
// behind that gateway. A sub-device logged in through another session of
// another gateway is logged out there.
func (h *hook) login(s *session, sub api.SubDeviceAuth) (string, error) {
	ts, reason, err := h.verifySub(s, sub, purposeLogin)
	if err != nil {
		return reason, err
	}
	key := sub.ProductKey + "/" + sub.DeviceKey
	d, _ := h.devices.Device(sub.ProductKey, sub.DeviceKey)
	if d.GatewayProductKey != s.pk || d.GatewayDeviceKey != s.dk {
		return "bad_subdevice", errors.New("sub-device " + key + " is not in this gateway's topology (thing.topo.add it first)")
	}
	if !h.once.use(key, purposeLogin+sub.Sign, ts, h.now()) {
		return "replay", fmt.Errorf("sub-device %s: signature used before", key)
	}
	h.mu.Lock()
	old := h.subOwner[key]
	s.subs[key] = d.Secret
	h.subOwner[key] = s
	h.mu.Unlock()
	if old != nil && old != s {
		h.logoutSub(old, key)
	}
	h.m.messages.WithLabelValues("sub_login").Inc()
	return "", nil
}

// sameOrg reports whether device d belongs to the org of gateway session s,
// as the registry has them now: a gateway may carry only its own org's
// sub-devices, even when it can sign for another org's. A device's org
// cannot change (the registry refuses it), so a login stays valid.
func (h *hook) sameOrg(s *session, d api.Device) bool {
	gw, ok := h.devices.Device(s.pk, s.dk)
	return ok && gw.Org == d.Org
}
