package edge

import (
	"context"
	"time"
)

// statusEvery is how often (on the edge's clock) the gateway reports its own status points.
const statusEvery = 5 * time.Second

// PointQueueDepth is the gateway's measurepoint of the samples waiting in
// its store-and-forward queue (the modbus-gateway thing model's GW.QueueDepth).
const PointQueueDepth = "GW.QueueDepth"

// reportStatus posts the gateway's queue depth as its own measurepoint
// every statusEvery while the cloud session is up (the console's edges
// page shows it). It is posted live, not queued: while the cloud is out of
// reach the depth grows unseen, and the first report after it says how far.
func (e *Edge) reportStatus(ctx context.Context, up *uplink, q *Queue) error {
	tick, stop := e.clock.Tick(statusEvery)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-tick:
			up.mu.Lock()
			dev := up.dev
			up.mu.Unlock()
			if dev == nil {
				continue
			}
			items, _ := q.Len()
			pctx, cancel := context.WithTimeout(ctx, e.cfg.Cloud.PublishTimeout)
			err := dev.Post(pctx, t, map[string]any{PointQueueDepth: items})
			cancel()
			if err != nil && ctx.Err() == nil {
				e.log.Debug("gateway status not posted", "err", err)
			}
		}
	}
}
