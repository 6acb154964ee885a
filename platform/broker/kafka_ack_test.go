package broker

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
)

// startBus starts an embedded Kafka with the telemetry topic and an
// asynchronous producer to it, as a node runs them.
func startBus(t testing.TB) (*bus.Embedded, *bus.AsyncProducer) {
	t.Helper()
	const partitions = 3
	k, err := bus.StartEmbedded("127.0.0.1:0", "", false, partitions, api.TopicTelemetry)
	require.NoError(t, err)
	t.Cleanup(k.Close)
	cfg := bus.DefaultConfig()
	cfg.Partitions = partitions
	p := bus.NewAsyncProducer(k.Addrs(), cfg)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return k, p
}

// gatedProducer hands messages to the real producer only once its gate opens.
type gatedProducer struct {
	next bus.Producer
	gate chan struct{}
}

func (p *gatedProducer) Send(ctx context.Context, msg bus.Message, done func(error)) {
	go func() {
		<-p.gate
		p.next.Send(context.Background(), msg, done)
	}()
}

func (p *gatedProducer) Produce(ctx context.Context, msgs ...bus.Message) error {
	return bus.SendAll(ctx, p.Send, msgs...)
}

// telemetryIDs returns device/id of every record on the telemetry topic,
// read from each partition's start to its end.
func telemetryIDs(t testing.TB, k *bus.Embedded) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := bus.ReadTopic(ctx, k.Addrs(), bus.DefaultConfig(), api.TopicTelemetry)
	require.NoError(t, err)
	var ids []string
	for _, m := range msgs {
		var rec api.Record
		require.NoError(t, api.DecodeRecord(m.Value, &rec))
		ids = append(ids, rec.Device+"/"+rec.MessageID)
	}
	return ids
}

// readPubrec reads the next packet, which must be a PUBREC, and returns its packet id.
func (c *rawClient) readPubrec() uint16 {
	c.t.Helper()
	pk, err := c.read(10 * time.Second)
	require.NoError(c.t, err)
	require.Equal(c.t, packets.Pubrec, pk.FixedHeader.Type)
	require.Zero(c.t, pk.ReasonCode)
	return pk.PacketID
}

func TestQoS2PubrecOnlyOnceTheRecordIsInKafka(t *testing.T) {
	k, real := startBus(t)
	prod := &gatedProducer{next: real, gate: make(chan struct{})}
	r := startRigWith(t, nil, prod)
	d := r.device(t, "d1")
	for _, version := range []byte{4, 5} {
		c := r.rawDial(t, d, version)
		base := uint16(version) * 100
		for id := base + 1; id <= base+3; id++ {
			c.write(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2},
				TopicName:   api.MeasurepointPostTopic(d.ProductKey, d.DeviceKey),
				PacketID:    id,
				Payload:     fmt.Appendf(nil, `{"id":"%d","params":{"measurepoints":{"Temp":%d}}}`, id, id),
			})
		}
		if version == 4 {
			// Kafka has not got them: no PUBREC, and nothing on the topic.
			c.quiet(300 * time.Millisecond)
			require.Empty(t, telemetryIDs(t, k))
			close(prod.gate)
		}
		for id := base + 1; id <= base+3; id++ {
			require.Equal(t, id, c.readPubrec(), "PUBRECs in arrival order")
			// The PUBREC came: the record is already readable from Kafka.
			require.Contains(t, telemetryIDs(t, k), fmt.Sprintf("d1/%d", id))
		}
		c.conn.Close()
	}
}

func TestAbruptCloseLosesNothingAcknowledged(t *testing.T) {
	k, prod := startBus(t)
	r := startRigWith(t, func(c *Config) { c.RateLimit, c.Burst = 1e6, 1e6 }, prod)
	const conns, each = 8, 400
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for i := range conns {
		d := r.device(t, fmt.Sprintf("d%d", i))
		c := r.rawDial(t, d, 4)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A reader collects PUBACKs while the writer keeps 64 requests
			// unacknowledged (more than the pipeline's 32), so the connection
			// always has many in flight; after cut PUBACKs the connection is
			// reset (as when the device's process is killed).
			got := make(chan uint16, each)
			var n atomic.Int64
			go func() {
				defer close(got)
				for {
					pk, err := c.read(10 * time.Second)
					if err != nil {
						return
					}
					if pk.FixedHeader.Type == packets.Puback {
						n.Add(1)
						got <- pk.PacketID
					}
				}
			}()
			cut := int64(each/4 + 37*i%100)
			for id := uint16(1); id <= each; id++ {
				for int64(id)-n.Load() > 64 {
					time.Sleep(100 * time.Microsecond)
				}
				if n.Load() >= cut {
					c.conn.(*net.TCPConn).SetLinger(0)
					c.conn.Close()
					break
				}
				c.publish(d, id)
			}
			for id := range got {
				mu.Lock()
				acked = append(acked, fmt.Sprintf("%s/%d", d.DeviceKey, id))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.NotEmpty(t, acked)
	stored := map[string]bool{}
	for _, id := range telemetryIDs(t, k) {
		stored[id] = true
	}
	var lost []string
	for _, id := range acked {
		if !stored[id] {
			lost = append(lost, id)
		}
	}
	sort.Strings(lost)
	require.Empty(t, lost, "acknowledged and not in Kafka (%d acknowledged, %d stored)", len(acked), len(stored))
	t.Logf("%d of %d published acknowledged before the cut, %d records in Kafka", len(acked), conns*each, len(stored))
}
