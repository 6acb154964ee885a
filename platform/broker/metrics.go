package broker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	messages       *prometheus.CounterVec
	rejects        *prometheus.CounterVec
	connectRejects *prometheus.CounterVec
	connects       prometheus.Counter
	sessions       prometheus.Gauge
	connections    prometheus.Gauge
	bans           *prometheus.CounterVec
	puback         prometheus.Histogram
	samples        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	auto := promauto.With(reg)
	m := &metrics{
		messages: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_broker_messages_total", Help: "Device messages accepted onto the bus, by kind.",
		}, []string{"kind"}),
		rejects: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_broker_rejected_messages_total", Help: "Device messages, subscriptions and Wills refused, by reason.",
		}, []string{"reason"}),
		connectRejects: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_broker_rejected_connects_total", Help: "Connections and logins refused or closed before login, by reason.",
		}, []string{"reason"}),
		connects: auto.NewCounter(prometheus.CounterOpts{
			Name: "gale_broker_connects_total", Help: "Device logins accepted.",
		}),
		sessions: auto.NewGauge(prometheus.GaugeOpts{
			Name: "gale_broker_sessions", Help: "Devices connected now.",
		}),
		connections: auto.NewGauge(prometheus.GaugeOpts{
			Name: "gale_broker_connections", Help: "Open TCP connections, logged in or not.",
		}),
		bans: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_broker_login_bans_total", Help: "Remote addresses and devices banned for failing too many logins, by scope (ip, device).",
		}, []string{"scope"}),
		puback: auto.NewHistogram(prometheus.HistogramOpts{
			Name: "gale_broker_puback_seconds", Help: "Time from receiving a QoS 1 telemetry message to Kafka's acknowledgement (when the PUBACK is sent).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}),
		samples: auto.NewCounter(prometheus.CounterOpts{
			Name: "gale_broker_samples_total", Help: "Measurepoint samples accepted onto the bus.",
		}),
	}
	return m
}
