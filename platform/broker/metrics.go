package broker

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	messages       *prometheus.CounterVec
	rejects        *prometheus.CounterVec
	connectRejects *prometheus.CounterVec
	connects       prometheus.Counter
	sessions       prometheus.Gauge
	puback         prometheus.Histogram
	samples        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_broker_messages_total", Help: "Device messages accepted onto the bus, by kind.",
		}, []string{"kind"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_broker_rejected_messages_total", Help: "Device messages refused with an error reply, by reason.",
		}, []string{"reason"}),
		connectRejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_broker_rejected_connects_total", Help: "Connects refused, by reason.",
		}, []string{"reason"}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gale_broker_connects_total", Help: "Device logins accepted.",
		}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gale_broker_sessions", Help: "Devices connected now.",
		}),
		puback: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gale_broker_puback_seconds", Help: "Time from receiving a QoS 1 telemetry message to Kafka's acknowledgement (when the PUBACK is sent).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gale_broker_samples_total", Help: "Measurepoint samples accepted onto the bus.",
		}),
	}
	reg.MustRegister(m.messages, m.rejects, m.connectRejects, m.connects, m.sessions, m.puback, m.samples)
	return m
}
