package edge

import (
	"context"
	"time"
)

// statusEvery is how often (on the edge's clock) the gateway reports its own status points.
const statusEvery = 5 * time.Second

// The gateway's own measurepoints (the modbus-gateway thing model's).
const (
	// PointQueueDepth is the samples waiting in its store-and-forward queue.
	PointQueueDepth = "GW.QueueDepth"
	// PointPollLatency is its slowest poll of a unit's group since the last report, in ms.
	PointPollLatency = "GW.PollLatency"
)

// reportStatus posts the gateway's queue depth and slowest poll as its own
// measurepoints every statusEvery while the cloud session is up (the
// console's edges page shows them). It is posted live, not queued: while the cloud is out of
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
			points := map[string]any{PointQueueDepth: items}
			if slowest := e.m.slowestPoll.Swap(0); slowest > 0 {
				points[PointPollLatency] = float64(slowest) / float64(time.Millisecond)
			}
			pctx, cancel := context.WithTimeout(ctx, e.cfg.Cloud.PublishTimeout)
			err := dev.Post(pctx, t, points)
			cancel()
			if err != nil && ctx.Err() == nil {
				e.log.Debug("gateway status not posted", "err", err)
			}
		}
	}
}
