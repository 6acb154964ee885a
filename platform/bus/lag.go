package bus

import "github.com/prometheus/client_golang/prometheus"

// RegisterLag registers c's lag in reg as gale_kafka_consumer_lag{group}:
// every consumer group has one. unregister removes it, for consumers that
// stop before the process does (a reloaded route's).
func RegisterLag(reg prometheus.Registerer, c *Consumer) (unregister func(), err error) {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "gale_kafka_consumer_lag",
		Help:        "Messages of the group's topics past its committed offsets, measured every 5 s (-1: cannot be measured).",
		ConstLabels: prometheus.Labels{"group": c.group},
	}, func() float64 { return float64(c.Lag()) })
	if err := reg.Register(g); err != nil {
		return nil, err
	}
	return func() { reg.Unregister(g) }, nil
}
