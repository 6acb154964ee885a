package broker

import (
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/pki"
)

// certHook refuses a login whose device is not the one its TLS client
// certificate names (mutual TLS). It runs before the signature check, in
// OnConnect, as mochi grants a login when any hook authenticates it.
type certHook struct {
	mqtt.HookBase
	server  *mqtt.Server
	rejects *prometheus.CounterVec
	log     *slog.Logger
}

func newCertHook(server *mqtt.Server, rejects *prometheus.CounterVec, log *slog.Logger) *certHook {
	return &certHook{server: server, rejects: rejects, log: log}
}

// ID names the hook.
func (h *certHook) ID() string { return "gale-device-cert" }

// Provides says the hook handles OnConnect.
func (h *certHook) Provides(b byte) bool { return b == mqtt.OnConnect }

// OnConnect checks the client certificate, if any, against the login's
// device. A malformed login passes here and is refused by the auth hook.
func (h *certHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	login, err := api.ParseLogin(pk.Connect.ClientIdentifier, string(pk.Connect.Username))
	if err != nil {
		return nil
	}
	if err := pki.CheckDevice(cl.Net.Conn, login.ProductKey, login.DeviceKey); err != nil {
		h.rejects.WithLabelValues("cert_mismatch").Inc()
		h.log.Info("connect refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", "cert_mismatch", "err", err)
		code := packets.ErrNotAuthorized
		if cl.Properties.ProtocolVersion < 5 {
			code = packets.ErrBadUsernameOrPassword // which mochi sends as MQTT 3's "not authorized"
		}
		if err := h.server.SendConnack(cl, code, false, nil); err != nil {
			h.log.Debug("send connack", "err", err)
		}
		return code
	}
	return nil
}
