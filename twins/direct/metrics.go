package direct

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gale-iot/gale/platform/device"
)

// collector exposes the sum of the devices' client counters, read once per scrape.
type collector struct {
	r                                                            *Runner
	devices, connected, connects, sent, resumed, queued, dropped *prometheus.Desc
	rejected                                                     *prometheus.Desc
}

func newCollector(r *Runner) *collector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &collector{
		r:         r,
		devices:   d("gale_twins_direct_devices", "Direct devices run."),
		connected: d("gale_twins_direct_connected", "Direct devices connected now."),
		connects:  d("gale_twins_direct_connects_total", "Successful logins of the direct devices."),
		sent:      d("gale_twins_direct_sent_total", "Live posts the broker acknowledged."),
		resumed:   d("gale_twins_direct_resumed_total", "Queued posts delivered by replay after a reconnect."),
		queued:    d("gale_twins_direct_queued", "Posts queued for replay."),
		dropped:   d("gale_twins_direct_dropped_total", "Queued posts dropped because a device's queue was full."),
		rejected:  d("gale_twins_direct_rejected_total", "Posts the cloud answered with an error code."),
	}
}

// Describe sends the metrics' descriptions.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.devices, c.connected, c.connects, c.sent, c.resumed, c.queued, c.dropped, c.rejected} {
		ch <- d
	}
}

// Collect sums the clients' stats.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.r.mu.Lock()
	clients := c.r.clients
	c.r.mu.Unlock()
	var connected float64
	var sum device.Stats
	for _, cl := range clients {
		s := cl.Stats()
		if s.Connected {
			connected++
		}
		sum.Connects += s.Connects
		sum.Sent += s.Sent
		sum.Resumed += s.Resumed
		sum.Queued += s.Queued
		sum.Dropped += s.Dropped
		sum.Rejected += s.Rejected
	}
	g, k := prometheus.GaugeValue, prometheus.CounterValue
	ch <- prometheus.MustNewConstMetric(c.devices, g, float64(len(c.r.devices)))
	ch <- prometheus.MustNewConstMetric(c.connected, g, connected)
	ch <- prometheus.MustNewConstMetric(c.connects, k, float64(sum.Connects))
	ch <- prometheus.MustNewConstMetric(c.sent, k, float64(sum.Sent))
	ch <- prometheus.MustNewConstMetric(c.resumed, k, float64(sum.Resumed))
	ch <- prometheus.MustNewConstMetric(c.queued, g, float64(sum.Queued))
	ch <- prometheus.MustNewConstMetric(c.dropped, k, float64(sum.Dropped))
	ch <- prometheus.MustNewConstMetric(c.rejected, k, float64(sum.Rejected))
}
