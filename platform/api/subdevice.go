package api

import (
	"strconv"
)

// SubDeviceAuth is one sub-device's signed entry in thing.topo.add and
// combine/login requests a gateway sends for it.
type SubDeviceAuth struct {
	ProductKey string `json:"productKey"`
	DeviceKey  string `json:"deviceKey"`
	ClientID   string `json:"clientId"`
	Timestamp  string `json:"timestamp"`
	SignMethod string `json:"signMethod"`
	// Sign is UPPER(hex(sha256("clientId"+clientId+"deviceKey"+dk+"productKey"+pk+"timestamp"+ts+secret))).
	Sign         string `json:"sign"`
	CleanSession string `json:"cleanSession,omitempty"`
}

// SubDeviceLoginBatch is the params of combine/login/batch.
type SubDeviceLoginBatch struct {
	SubDevices []SubDeviceAuth `json:"subDevices"`
}

// SubDeviceLoginResult is the reply data of combine/login/batch.
type SubDeviceLoginResult struct {
	Logged []SubDeviceRef `json:"loginedSubDevices"`
	Failed []SubDeviceRef `json:"failedSubDevices"`
}

// SubDeviceRef names a sub-device.
type SubDeviceRef struct {
	ProductKey string `json:"productKey"`
	DeviceKey  string `json:"deviceKey"`
	Message    string `json:"message,omitempty"`
}

// SignSubDevice signs a sub-device entry with its secret at ts (Unix ms).
func SignSubDevice(productKey, deviceKey, secret string, ts int64) SubDeviceAuth {
	t := strconv.FormatInt(ts, 10)
	return SubDeviceAuth{
		ProductKey: productKey, DeviceKey: deviceKey, ClientID: deviceKey, Timestamp: t, SignMethod: "sha256",
		Sign: signature(deviceKey, productKey, deviceKey, secret, t), CleanSession: "true",
	}
}

// Verify reports whether the entry is signed with secret.
func (a SubDeviceAuth) Verify(secret string) bool {
	if a.SignMethod != "" && a.SignMethod != "sha256" {
		return false
	}
	return subtleEqual(a.Sign, signature(a.ClientID, a.ProductKey, a.DeviceKey, secret, a.Timestamp))
}

// TopoAddTopic is where a gateway adds sub-devices to its topology.
func TopoAddTopic(gwPK, gwDK string) string { return DevicePrefix(gwPK, gwDK) + "thing/topo/add" }

// SessionPrefix is the /ext/session/{pk}/{dk}/ namespace of a gateway.
func SessionPrefix(gwPK, gwDK string) string { return "/ext/session/" + gwPK + "/" + gwDK + "/" }

// SubLoginTopic is where a gateway logs one sub-device in.
func SubLoginTopic(gwPK, gwDK string) string { return SessionPrefix(gwPK, gwDK) + "combine/login" }

// SubLoginBatchTopic is where a gateway logs many sub-devices in.
func SubLoginBatchTopic(gwPK, gwDK string) string { return SubLoginTopic(gwPK, gwDK) + "/batch" }

// SubLogoutTopic is where a gateway logs a sub-device out.
func SubLogoutTopic(gwPK, gwDK string) string { return SessionPrefix(gwPK, gwDK) + "combine/logout" }
