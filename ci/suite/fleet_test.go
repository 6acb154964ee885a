//go:build containers

package suite

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
)

// seqPoint carries each message's per-device sequence number.
const seqPoint = "Seq"

// Load shape of every device.
const (
	postInterval   = 50 * time.Millisecond
	publishTimeout = 5 * time.Second // no PUBACK by then: the message is unacknowledged
	retryDelay     = 250 * time.Millisecond
)

// fleet is a set of devices posting Seq at QoS 1 through a list of MQTT
// brokers. Message seq of every device carries the value seq at timestamp
// t0+seq ms, so a stored sample tells which message it came from. A device
// whose connection or publish fails moves to the next broker of the list.
type fleet struct {
	t0      time.Time
	devices []*loadDevice
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// loadDevice is one device of a fleet and what it was told.
type loadDevice struct {
	key string

	mu       sync.Mutex
	acks     []ack // in order
	failures int   // failed connects and publishes
}

// ack is a PUBACKed message.
type ack struct {
	seq int64
	at  time.Time
}

// startFleet starts devs posting; device i starts on brokers[i%len(brokers)].
// It stops them when t ends.
func startFleet(t testing.TB, brokers []string, devs []api.Device) *fleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{t0: time.Now().Truncate(time.Second), cancel: cancel}
	for i, d := range devs {
		ld := &loadDevice{key: d.DeviceKey}
		f.devices = append(f.devices, ld)
		f.wg.Go(func() { f.run(ctx, ld, d, brokers, i%len(brokers)) })
	}
	t.Cleanup(f.stop)
	return f
}

// stop stops the devices and waits for them; safe to call twice.
func (f *fleet) stop() {
	f.cancel()
	f.wg.Wait()
}

// run posts until ctx ends, connecting to brokers[b] and moving on when it fails.
func (f *fleet) run(ctx context.Context, ld *loadDevice, d api.Device, brokers []string, b int) {
	seq := int64(0)
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, publishTimeout)
		dev, err := device.Connect(cctx, device.Config{Broker: brokers[b], ProductKey: d.ProductKey, DeviceKey: d.DeviceKey, Secret: d.Secret})
		cancel()
		for err == nil && ctx.Err() == nil {
			seq++
			pctx, cancel := context.WithTimeout(ctx, publishTimeout)
			err = dev.Post(pctx, f.t0.Add(time.Duration(seq)*time.Millisecond), map[string]any{seqPoint: seq})
			cancel()
			if err == nil {
				ld.acked(seq)
				sleep(ctx, postInterval)
			}
		}
		if dev != nil {
			dev.Close()
		}
		if ctx.Err() != nil {
			return
		}
		ld.failed()
		b = (b + 1) % len(brokers)
		sleep(ctx, retryDelay)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (d *loadDevice) acked(seq int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.acks = append(d.acks, ack{seq: seq, at: time.Now()})
}

func (d *loadDevice) failed() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failures++
}

// snapshot returns a copy of the device's acks and its failure count.
func (d *loadDevice) snapshot() ([]ack, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.acks), d.failures
}

// ackedSince reports whether every device in devs (nil: all) had at least n
// messages acknowledged after at.
func (f *fleet) ackedSince(at time.Time, n int, devs []*loadDevice) bool {
	if devs == nil {
		devs = f.devices
	}
	for _, d := range devs {
		acks, _ := d.snapshot()
		i, _ := slices.BinarySearchFunc(acks, at, func(a ack, t time.Time) int { return a.at.Compare(t) })
		if len(acks)-i < n {
			return false
		}
	}
	return true
}

// failures returns the failed connects and publishes of all devices.
func (f *fleet) failures() int {
	n := 0
	for _, d := range f.devices {
		_, fails := d.snapshot()
		n += fails
	}
	return n
}

// longestGaps returns, for each device of devs, the longest time between
// two consecutive acknowledgements: how long the device could not publish.
func longestGaps(devs []*loadDevice) []time.Duration {
	var gaps []time.Duration
	for _, d := range devs {
		acks, _ := d.snapshot()
		var g time.Duration
		for i := 1; i < len(acks); i++ {
			g = max(g, acks[i].at.Sub(acks[i-1].at))
		}
		gaps = append(gaps, g)
	}
	slices.Sort(gaps)
	return gaps
}

// ledger is a comparison of what the fleet was acknowledged with what a node stores.
type ledger struct {
	Acked int // PUBACKed messages
	// Stored counts the acknowledged messages whose sample is stored with its value.
	Stored int
	// Lost counts acknowledged messages without a sample.
	Lost int
	// Wrong counts stored samples whose value is not the sequence number
	// sent at their timestamp (a duplicate with a different value).
	Wrong int
	// Unacked counts stored samples of messages never acknowledged (allowed:
	// the broker may have had them on Kafka when the PUBACK was lost).
	Unacked int
	// Problems names the first few lost or wrong samples.
	Problems []string
}

// check compares the fleet's acknowledgements with stored (by device, then timestamp in ms).
func (f *fleet) check(stored map[string]map[int64]float64) ledger {
	var l ledger
	problem := func(format string, args ...any) {
		if len(l.Problems) < 10 {
			l.Problems = append(l.Problems, fmt.Sprintf(format, args...))
		}
	}
	t0 := f.t0.UnixMilli()
	for _, d := range f.devices {
		acks, _ := d.snapshot()
		samples := stored[d.key]
		acked := make(map[int64]bool, len(acks))
		for _, a := range acks {
			acked[a.seq] = true
			l.Acked++
			if v, ok := samples[t0+a.seq]; ok && v == float64(a.seq) {
				l.Stored++
			} else if !ok {
				l.Lost++
				problem("%s: seq %d acknowledged at %s is not stored", d.key, a.seq, a.at.Format(time.RFC3339Nano))
			}
		}
		for ts, v := range samples {
			seq := ts - t0
			switch {
			case v != float64(seq):
				l.Wrong++
				problem("%s: sample at seq %d has value %v", d.key, seq, v)
			case !acked[seq]:
				l.Unacked++
			}
		}
	}
	return l
}
