package broker

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// BenchmarkPublishThroughput is the broker's ingest path alone (Kafka is a
// fake that acknowledges at once, no rate limit) with the connection sizes
// of issue 13 (read buffer, outbound queue): 20 devices each pipeline 5,000
// QoS 1 measurepoint posts of 10 points, as fast as the broker takes them,
// and read their PUBACKs and replies. It reports msgs/s and the share of
// replies mochi dropped because the device's outbound queue was full.
//
//	go test -run '^$' -bench PublishThroughput -benchtime 3x ./platform/broker/
func BenchmarkPublishThroughput(b *testing.B) {
	for _, sz := range []struct{ read, pending int }{{2048, 256}, {1024, 256}, {512, 256}, {512, 64}} {
		b.Run(fmt.Sprintf("readBuffer=%d,pending=%d", sz.read, sz.pending), func(b *testing.B) {
			r := startIdleRig(b, func(c *Config) {
				c.RateLimit, c.Burst = 1e6, 1e6
				c.ReadBufferSize, c.MaxPendingWrites = sz.read, sz.pending
			})
			const conns, each = 20, 5000
			var elapsed time.Duration
			for range b.N {
				start := time.Now()
				publishFromDevices(b, r, conns, each, 0)
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(conns*each*b.N)/elapsed.Seconds(), "msgs/s")
			// Replies go through the outbound queue; a device flooding
			// faster than its replies drain loses those that find it full.
			b.ReportMetric(float64(r.b.server.Info.MessagesDropped)/float64(conns*each*b.N)*100, "%replies-dropped")
			require.Equal(b, conns*each*b.N, r.prod.count())
		})
	}
}

// BenchmarkPublishOneInFlight is the same path with devices as they are at
// a few messages a second: 200 devices each send 250 posts, one at a time
// (the next once the last is acknowledged), so every PUBACK and its reply
// leave alone. Compare CPU per message (user+sys of the process), the
// figure this measures on a shared machine:
//
//	go test -c -o broker.test ./platform/broker/ && cd platform/broker
//	/usr/bin/time -f '%U %S' ./broker.test -test.run '^$' -test.bench PublishOneInFlight -test.benchtime 1x
func BenchmarkPublishOneInFlight(b *testing.B) {
	r := startIdleRig(b, func(c *Config) { c.RateLimit, c.Burst = 1e6, 1e6 })
	const conns, each = 200, 250
	start := time.Now()
	for range b.N {
		publishFromDevices(b, r, conns, each, 1)
	}
	b.ReportMetric(float64(conns*each*b.N)/time.Since(start).Seconds(), "msgs/s")
	require.Equal(b, conns*each*b.N, r.prod.count())
}

// publishFromDevices connects conns devices to the rig and has each
// publish each posts (publishFlatOut with window), all at once.
func publishFromDevices(b *testing.B, r *rig, conns, each, window int) {
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		c, err := idleClient(r.b.Addr(), i)
		require.NoError(b, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			errs <- publishFlatOut(c, fmt.Sprintf("idle%d", i), each, window)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
}

// publishFlatOut writes n QoS 1 posts of device dk on c while it reads
// the PUBACKs and the replies, at most window unacknowledged (0: no
// bound), and returns once every post is acknowledged.
func publishFlatOut(c net.Conn, dk string, n, window int) error {
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	if window == 0 {
		window = n
	}
	credit := make(chan struct{}, window)
	for range window {
		credit <- struct{}{}
	}
	topic := api.MeasurepointPostTopic(testProduct, dk)
	pts := make([]string, 10)
	for i := range pts {
		pts[i] = fmt.Sprintf(`"P%d":%d.25`, i, i)
	}
	done := make(chan error, 1)
	go func() { // the PUBACKs, and the replies (QoS 1, acknowledged back)
		rd := bufio.NewReader(c)
		acks := 0
		for acks < n {
			h, err := rd.ReadByte()
			if err != nil {
				done <- err
				return
			}
			length, mult := 0, 1
			for {
				x, err := rd.ReadByte()
				if err != nil {
					done <- err
					return
				}
				length += int(x&0x7f) * mult
				mult <<= 7
				if x&0x80 == 0 {
					break
				}
			}
			body := make([]byte, length)
			if _, err := io.ReadFull(rd, body); err != nil {
				done <- err
				return
			}
			switch {
			case h>>4 == 4: // PUBACK
				acks++
				select {
				case credit <- struct{}{}:
				default:
				}
			case h>>4 == 3 && h&0x06 != 0: // a QoS 1 reply
				tl := int(binary.BigEndian.Uint16(body))
				if !strings.HasSuffix(string(body[2:2+tl]), "_reply") {
					done <- fmt.Errorf("unexpected publish on %s", body[2:2+tl])
					return
				}
				if _, err := c.Write([]byte{0x40, 2, body[2+tl], body[3+tl]}); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	for i := range n {
		select {
		case <-credit:
		case err := <-done:
			return fmt.Errorf("ended after %d posts: %v", i, err)
		}
		payload := fmt.Sprintf(`{"id":"%d","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{%s},"time":%d}}`,
			i, strings.Join(pts, ","), time.Now().UnixMilli())
		if _, err := c.Write(publishPacket(topic, uint16(i%65535+1), []byte(payload))); err != nil {
			return err
		}
	}
	return <-done
}

// publishPacket is an MQTT 3.1.1 QoS 1 PUBLISH.
func publishPacket(topic string, id uint16, payload []byte) []byte {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, uint16(len(topic)))
	body = append(body, topic...)
	body = binary.BigEndian.AppendUint16(body, id)
	return mqttPacket(0x32, append(body, payload...))
}
