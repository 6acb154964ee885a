package edge

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Kinds of poll errors (label kind of gale_edge_poll_errors_total).
const (
	kindTimeout    = "timeout"    // no answer within the target's timeout
	kindException  = "exception"  // a Modbus exception response
	kindProtocol   = "protocol"   // a malformed or mismatched frame
	kindConnection = "connection" // the TCP connection failed
	kindGarbage    = "garbage"    // a value that is NaN, infinite or outside its measurepoint's range
	kindStale      = "stale"      // the heartbeat register stopped moving
)

// Paths of acknowledged samples (label path of gale_edge_published_samples_total).
const (
	pathPost   = "post"
	pathResume = "resume"
)

type metrics struct {
	polls       *prometheus.CounterVec
	pollSeconds *prometheus.HistogramVec
	pollErrors  *prometheus.CounterVec
	samples     *prometheus.CounterVec
	published   *prometheus.CounterVec
	rejected    prometheus.Counter
	dropped     prometheus.Counter
	active      atomic.Bool // this edge polls and publishes
	connected   atomic.Bool // the gateway is logged in to the cloud
	connects    prometheus.Counter
	loginFailed prometheus.Counter
	services    *prometheus.CounterVec
	slowestPoll atomic.Int64 // nanoseconds, the longest poll since the last status report
}

// observePoll records how long a poll group's read took.
func (m *metrics) observePoll(target, group string, d time.Duration) {
	m.pollSeconds.WithLabelValues(target, group).Observe(d.Seconds())
	for {
		old := m.slowestPoll.Load()
		if int64(d) <= old || m.slowestPoll.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// newMetrics registers the edge's metrics; queue reports the queue's length.
func newMetrics(reg prometheus.Registerer, queue func() (items, bytes int64)) *metrics {
	auto := promauto.With(reg)
	m := &metrics{
		polls: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_edge_polls_total", Help: "Polls of a unit's poll group, including failed and skipped ones.",
		}, []string{"target", "group"}),
		pollSeconds: auto.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gale_edge_poll_duration_seconds", Help: "Time to read a unit's poll group over Modbus.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"target", "group"}),
		pollErrors: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_edge_poll_errors_total", Help: "Poll errors by kind: timeout, exception, protocol, connection, garbage, stale.",
		}, []string{"target", "device", "kind"}),
		samples: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_edge_samples_total", Help: "Samples polled and queued, by device.",
		}, []string{"device"}),
		published: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_edge_published_samples_total", Help: "Samples the cloud acknowledged, by path: post (live) or resume (replayed from the queue).",
		}, []string{"path"}),
		rejected: auto.NewCounter(prometheus.CounterOpts{
			Name: "gale_edge_rejected_samples_total", Help: "Samples the cloud refused with a 4xx reply; they are removed from the queue.",
		}),
		dropped: auto.NewCounter(prometheus.CounterOpts{
			Name: "gale_edge_queue_dropped_total", Help: "Oldest samples dropped because the queue was full.",
		}),
		connects: auto.NewCounter(prometheus.CounterOpts{
			Name: "gale_edge_uplink_connects_total", Help: "Successful cloud logins.",
		}),
		loginFailed: auto.NewCounter(prometheus.CounterOpts{
			Name: "gale_edge_subdevice_login_failures_total", Help: "Sub-devices the cloud refused to log in.",
		}),
		services: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_edge_service_calls_total", Help: "Service calls answered, by service and reply code.",
		}, []string{"service", "code"}),
	}
	auto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gale_edge_queue_depth", Help: "Samples in the store-and-forward queue.",
	}, func() float64 { n, _ := queue(); return float64(n) })
	auto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gale_edge_queue_bytes", Help: "Payload bytes in the store-and-forward queue.",
	}, func() float64 { _, b := queue(); return float64(b) })
	auto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gale_edge_active", Help: "1 when this edge is active (polls and publishes), 0 when standby.",
	}, func() float64 { return one(m.active.Load()) })
	auto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gale_edge_uplink_connected", Help: "1 when the gateway is logged in to the cloud with its sub-devices.",
	}, func() float64 { return one(m.connected.Load()) })
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
