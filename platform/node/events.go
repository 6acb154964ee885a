package node

import (
	"context"
	"encoding/json"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
)

// initEvents keeps the devices' events the node reads from gale.events in
// its registry (GET /api/v1/devices/{pk}/{dk}/events, the console's device
// page); every node keeps them all, in a consumer group of its own.
func (n *Node) initEvents(context.Context) error {
	skipped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gale_device_events_skipped_total",
		Help: "Records on gale.events that claimed to be a device's event but were malformed, not kept.",
	})
	if err := n.reg.Register(skipped); err != nil {
		return err
	}
	n.consume(EventsConsumerGroup+"-"+n.cfg.NodeID, []string{api.TopicEvents}, func(ctx context.Context, batch []bus.Message) error {
		evs := make([]api.DeviceEvent, 0, len(batch))
		for _, m := range batch {
			var ev api.DeviceEvent
			if err := json.Unmarshal(m.Value, &ev); err != nil || ev.Type != api.EventTypeDevice {
				if err != nil || ev.Type == "" {
					skipped.Inc()
				}
				continue // an alert change, or not JSON
			}
			if ev.Product == "" || ev.Device == "" || ev.Event == "" {
				skipped.Inc()
				continue
			}
			evs = append(evs, ev)
		}
		return n.Registry.AddDeviceEvents(ctx, evs)
	}, nil)
	return nil
}
