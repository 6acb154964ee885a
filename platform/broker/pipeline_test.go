package broker

import (
	"github.com/prometheus/client_golang/prometheus/testutil"

	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
)

// heldProducer holds every message until the test answers it, in any order.
type heldProducer struct {
	mu   sync.Mutex
	held []held
}

type held struct {
	msg  bus.Message
	done func(error)
}

func (p *heldProducer) Send(_ context.Context, msg bus.Message, done func(error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = append(p.held, held{msg: msg, done: done})
}

func (p *heldProducer) Produce(ctx context.Context, msgs ...bus.Message) error {
	return bus.SendAll(ctx, p.Send, msgs...)
}

func (p *heldProducer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.held)
}

// answer completes the i-th message sent with err.
func (p *heldProducer) answer(i int, err error) {
	p.mu.Lock()
	h := p.held[i]
	p.mu.Unlock()
	h.done(err)
}

// rawClient speaks MQTT over a plain connection, so tests see every packet
// the broker writes and in which order.
type rawClient struct {
	t       testing.TB
	conn    net.Conn
	r       *bufio.Reader
	version byte
}

// rawDial connects device d with MQTT version (4 or 5).
func (r *rig) rawDial(t testing.TB, d api.Device, version byte) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", r.b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	cred := api.Sign(d.DeviceKey, d.ProductKey, d.DeviceKey, d.Secret, time.Now().UnixMilli())
	c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), version: version}
	c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60, ClientIdentifier: cred.ClientID,
		UsernameFlag: true, Username: []byte(cred.Username), PasswordFlag: true, Password: []byte(cred.Password),
	}})
	ack, err := c.read(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, packets.Connack, ack.FixedHeader.Type)
	require.Zero(t, ack.ReasonCode, "connack")
	return c
}

func (c *rawClient) write(pk packets.Packet) {
	c.t.Helper()
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&b)
	case packets.Publish:
		pk.ProtocolVersion = c.version
		err = pk.PublishEncode(&b)
	}
	require.NoError(c.t, err)
	_, err = c.conn.Write(b.Bytes())
	require.NoError(c.t, err)
}

// publish sends a QoS 1 measurepoint post of d with packet id id.
func (c *rawClient) publish(d api.Device, id uint16) {
	c.t.Helper()
	c.write(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   api.MeasurepointPostTopic(d.ProductKey, d.DeviceKey),
		PacketID:    id,
		Payload:     fmt.Appendf(nil, `{"id":"%d","params":{"measurepoints":{"Temp":%d}}}`, id, id),
	})
}

// read returns the next packet the broker wrote, or an error when none
// comes within wait (a timeout) or the connection ended (io.EOF).
func (c *rawClient) read(wait time.Duration) (packets.Packet, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	hb, err := c.r.ReadByte()
	if err != nil {
		return packets.Packet{}, err
	}
	pk := packets.Packet{ProtocolVersion: c.version}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return pk, err
	}
	n, shift := 0, 0
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return pk, err
		}
		n |= int(b&0x7f) << shift
		if shift += 7; b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	}
	return pk, err
}

// pubacks reads n PUBACKs and returns their packet ids and reason codes.
func (c *rawClient) pubacks(n int) (ids []uint16, codes []byte) {
	c.t.Helper()
	for range n {
		pk, err := c.read(5 * time.Second)
		require.NoError(c.t, err)
		require.Equal(c.t, packets.Puback, pk.FixedHeader.Type)
		ids, codes = append(ids, pk.PacketID), append(codes, pk.ReasonCode)
	}
	return ids, codes
}

// quiet requires that the broker writes nothing for a while.
func (c *rawClient) quiet(wait time.Duration) {
	c.t.Helper()
	pk, err := c.read(wait)
	var ne net.Error
	require.True(c.t, errors.As(err, &ne) && ne.Timeout(), "broker wrote %v (err %v)", pk.FixedHeader, err)
}

// closed requires that the broker closes the connection without writing anything more.
func (c *rawClient) closed() {
	c.t.Helper()
	pk, err := c.read(5 * time.Second)
	require.ErrorIs(c.t, err, io.EOF, "broker wrote %v", pk.FixedHeader)
}

func TestPubacksFollowArrivalOrderAndKafka(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("mqtt%d", version), func(t *testing.T) {
			prod := &heldProducer{}
			r := startRigWith(t, nil, prod)
			d := r.device(t, "d1")
			c := r.rawDial(t, d, version)
			for id := uint16(1); id <= 3; id++ {
				c.publish(d, id)
			}
			// All three are on their way at once: the read loop did not wait for Kafka.
			require.Eventually(t, func() bool { return prod.count() == 3 }, 5*time.Second, 5*time.Millisecond)
			c.quiet(200 * time.Millisecond) // no PUBACK before Kafka's acknowledgement

			// Kafka acknowledges out of order: 3 and 2 wait for 1.
			prod.answer(2, nil)
			prod.answer(1, nil)
			c.quiet(200 * time.Millisecond)
			prod.answer(0, nil)
			ids, codes := c.pubacks(3)
			require.Equal(t, []uint16{1, 2, 3}, ids)
			require.Equal(t, []byte{0, 0, 0}, codes)
		})
	}
}

func TestInFlightBoundHoldsTheReadLoop(t *testing.T) {
	prod := &heldProducer{}
	r := startRigWith(t, func(c *Config) { c.MaxInFlight = 4 }, prod)
	d := r.device(t, "d1")
	c := r.rawDial(t, d, 4)
	for id := uint16(1); id <= 20; id++ {
		c.publish(d, id)
	}
	require.Eventually(t, func() bool { return prod.count() == 4 }, 5*time.Second, 5*time.Millisecond)
	// Kafka never answers: the connection holds no more than 4 requests.
	require.Never(t, func() bool { return prod.count() > 4 }, 300*time.Millisecond, 10*time.Millisecond)
	c.quiet(50 * time.Millisecond)

	// Each acknowledgement lets one more in, and every PUBACK comes in order.
	var got []uint16
	for i := range 20 {
		require.Eventually(t, func() bool { return prod.count() == min(i+4, 20) }, 5*time.Second, 5*time.Millisecond)
		require.LessOrEqual(t, prod.count()-i, 4, "in flight")
		prod.answer(i, nil)
		ids, _ := c.pubacks(1)
		got = append(got, ids...)
	}
	want := make([]uint16, 20)
	for i := range want {
		want[i] = uint16(i + 1)
	}
	require.Equal(t, want, got)
}

func TestProduceFailureWithholdsPuback(t *testing.T) {
	kafkaDown := errors.New("kafka is down")
	for _, tc := range []struct {
		name    string
		version byte
		timeout bool // Kafka never answers the first message instead of failing it
	}{
		{"mqtt4 error", 4, false},
		{"mqtt4 timeout", 4, true},
		{"mqtt5 error", 5, false},
		{"mqtt5 timeout", 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prod := &heldProducer{}
			r := startRigWith(t, func(c *Config) { c.ProduceTimeout = 300 * time.Millisecond }, prod)
			d := r.device(t, "d1")
			c := r.rawDial(t, d, tc.version)
			c.publish(d, 1)
			c.publish(d, 2)
			require.Eventually(t, func() bool { return prod.count() == 2 }, 5*time.Second, 5*time.Millisecond)
			// The second is in Kafka, but it must not be acknowledged ahead of the first.
			prod.answer(1, nil)
			if !tc.timeout {
				c.quiet(100 * time.Millisecond)
				prod.answer(0, kafkaDown)
			}
			if tc.version == 4 {
				// MQTT 3.1.1 has no negative PUBACK: the connection closes, with neither PUBACK.
				c.closed()
			} else {
				ids, codes := c.pubacks(2)
				require.Equal(t, []uint16{1, 2}, ids)
				require.Equal(t, []byte{packets.ErrImplementationSpecificError.Code, packets.CodeSuccess.Code}, codes)
			}
			require.Equal(t, 1.0, r.rejected(false, "bus_unavailable"))
			// Only what was acknowledged counts as accepted (issue 16, part 6).
			accepted := 1.0 // the second request's one sample
			if tc.version == 4 {
				accepted = 0 // the connection closed before its PUBACK
			}
			require.Equal(t, accepted, testutil.ToFloat64(r.b.m.samples), "samples accepted")
			require.Equal(t, accepted, testutil.ToFloat64(r.b.m.messages.WithLabelValues("post")), "messages accepted")
		})
	}
}

// blockingListener holds every service reply until released.
type blockingListener struct {
	release  chan struct{}
	deadline chan bool
}

func (*blockingListener) DeviceOnline(string, string) {}

func (l *blockingListener) ServiceReply(ctx context.Context, _, _, _ string, _ []byte) {
	_, ok := ctx.Deadline()
	l.deadline <- ok
	<-l.release
}

func TestServiceReplyLeavesTheReadLoop(t *testing.T) {
	r := startRig(t, nil)
	l := &blockingListener{release: make(chan struct{}), deadline: make(chan bool, 1)}
	r.b.hook.listener = l
	t.Cleanup(func() { close(l.release) })
	d := r.device(t, "d1")
	c := r.rawDial(t, d, 4)
	c.write(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   api.ServiceTopic(d.ProductKey, d.DeviceKey, "stop") + "_reply",
		PacketID:    1,
		Payload:     []byte(`{"id":"c1","code":200}`),
	})
	require.True(t, <-l.deadline, "the listener gets a deadline")
	c.publish(d, 2)
	// Both are acknowledged while the listener still handles the reply.
	ids, _ := c.pubacks(2)
	require.Equal(t, []uint16{1, 2}, ids)
	require.Equal(t, 1, r.prod.count())
}

// drainers counts h's goroutines in drainer (other tests' hooks may have
// theirs), and those of them waiting to be handed a session.
func drainers(h *hook) (all, waiting int) {
	buf := make([]byte, 1<<20)
	frame := fmt.Sprintf("broker.(*hook).drainer(%p", h)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, frame) {
			all++
			if strings.Contains(strings.SplitN(g, "\n", 2)[0], "[select") {
				waiting++
			}
		}
	}
	return all, waiting
}

func TestDrainersAreReusedAndEndWhenIdle(t *testing.T) {
	// Waiting long enough for a loaded machine to see the waiting drainer.
	h := &hook{drains: make(chan *session), drainIdle: 2 * time.Second}
	// A drainer held up (here on its session's lock, as on a device that
	// does not read) does not keep the next session waiting: another starts.
	stuck := &session{pipe: newPipeline(1)}
	stuck.pipe.mu.Lock()
	h.startDrain(stuck)
	s := &session{pipe: newPipeline(1)}
	h.startDrain(s)
	require.Eventually(t, func() bool { all, waiting := drainers(h); return all == 2 && waiting == 1 }, 5*time.Second, time.Millisecond)
	// The next session goes to the waiting drainer, not to a new goroutine.
	h.startDrain(s)
	require.Never(t, func() bool { all, _ := drainers(h); return all > 2 }, 20*time.Millisecond, time.Millisecond)
	stuck.pipe.mu.Unlock()
	// Idle drainers end.
	require.Eventually(t, func() bool { all, _ := drainers(h); return all == 0 }, 10*time.Second, 5*time.Millisecond)
}
