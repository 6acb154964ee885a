package mqtt

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mochi-mqtt/server/v2/packets"
)

// [gale fork] The write goroutine runs only while packets are queued: it
// delivers every queued packet in order, across many starts and stops, and
// no goroutine writes once the queue is empty.
func TestLazyWriterDeliversInOrderAndStops(t *testing.T) {
	s := newServer()
	cl, r, w := newTestClient() // its WriteLoop returns at once: nothing is queued
	defer w.Close()
	const n = 200
	got := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			buf := make([]byte, 10) // PUBLISH QoS 0 "a/b/c", one payload byte
			if _, err := io.ReadFull(r, buf); err != nil {
				got <- err
				return
			}
			if buf[0] != 0x30 || buf[1] != 8 || string(buf[4:9]) != "a/b/c" || buf[9] != byte(i) {
				got <- errors.New("out of order or malformed: " + string(buf))
				return
			}
			if i%7 == 0 {
				time.Sleep(time.Millisecond) // let the queue run dry now and then
			}
		}
		got <- nil
	}()
	for i := 0; i < n; i++ {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a/b/c", Payload: []byte{byte(i)}}
		for {
			_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b/c"}, pk)
			if err == nil {
				break
			}
			require.ErrorIs(t, err, packets.ErrPendingClientWritesExceeded)
			time.Sleep(100 * time.Microsecond) // the queue (3 slots) is full: retry
		}
	}
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("not every packet arrived")
	}
	require.Eventually(t, func() bool { return !cl.State.writing.Load() }, time.Second, time.Millisecond)
	require.Zero(t, cl.State.outbound.len())
}

// [gale fork] GetByListener read-locked the clients twice (through Len): a
// Delete waiting between the two locks deadlocked it, and Server.Close with it.
func TestClientsGetByListenerWithConcurrentDeletes(t *testing.T) {
	cls := NewClients()
	for i := 0; i < 100; i++ {
		cl := newClient(nil, &ops{options: &Options{Capabilities: NewDefaultServerCapabilities()}})
		cl.ID = string(rune('a'+i%26)) + string(rune('0'+i/26))
		cl.Net.Listener = "tcp"
		cls.Add(cl)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20000; i++ {
			_ = cls.GetByListener("tcp")
		}
	}()
	stop := make(chan struct{})
	go func() {
		cl := newClient(nil, &ops{options: &Options{Capabilities: NewDefaultServerCapabilities()}})
		cl.ID = "churn"
		for {
			select {
			case <-stop:
				return
			default:
			}
			cls.Add(cl)
			cls.Delete(cl.ID)
		}
	}()
	defer close(stop)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("GetByListener deadlocked against Delete")
	}
}

// [gale fork] An idle client lends its read buffer back to the server's pool
// and reads the next packet's first byte straight from the connection (a
// pipe), or waits for a TCP connection to be readable and then fills a lent
// buffer in one read (readIdleRaw): packets arrive whole whether they come in
// one piece, byte by byte after a pause, or back to back.
func TestClientReadLendsBufferWhileIdle(t *testing.T) {
	t.Run("pipe", func(t *testing.T) {
		r, w := net.Pipe()
		testReadLendsBuffer(t, r, w, false)
	})
	t.Run("tcp", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		w, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		r, err := ln.Accept()
		require.NoError(t, err)
		defer r.Close()
		testReadLendsBuffer(t, r, w, true)
	})
}

func testReadLendsBuffer(t *testing.T, r, w net.Conn, raw bool) {
	s := New(&Options{Logger: logger, ClientNetReadBufferSize: 16})
	cl := s.NewClient(r, "tcp", "lend", false)
	cl.Properties.ProtocolVersion = 4
	got := make(chan packets.Packet, 10)
	done := make(chan error, 1)
	go func() {
		done <- cl.Read(func(_ *Client, pk packets.Packet) error {
			got <- pk
			return nil
		})
	}()
	ping := []byte{packets.Pingreq << 4, 0}
	publish := []byte{packets.Publish << 4, 0}
	publish = append(publish, 0, 5, 'a', '/', 'b', '/', 'c')
	publish = append(publish, []byte("a payload longer than the 16-byte buffer")...)
	publish[1] = byte(len(publish) - 2)

	_, err := w.Write(ping)
	require.NoError(t, err)
	require.Equal(t, packets.Pingreq, (<-got).FixedHeader.Type)

	for _, b := range publish { // one byte at a time, the first after an idle pause
		time.Sleep(time.Millisecond)
		_, err = w.Write([]byte{b})
		require.NoError(t, err)
	}
	pk := <-got
	require.Equal(t, packets.Publish, pk.FixedHeader.Type)
	require.Equal(t, "a/b/c", pk.TopicName)
	require.Equal(t, "a payload longer than the 16-byte buffer", string(pk.Payload))

	_, err = w.Write(append(append(append([]byte{}, ping...), publish...), ping...)) // back to back
	require.NoError(t, err)
	require.Equal(t, packets.Pingreq, (<-got).FixedHeader.Type)
	require.Equal(t, packets.Publish, (<-got).FixedHeader.Type)
	require.Equal(t, packets.Pingreq, (<-got).FixedHeader.Type)
	require.Equal(t, raw, cl.Net.raw != nil, "read through the descriptor")

	_ = w.Close()
	require.ErrorIs(t, <-done, io.EOF)
}

// [gale fork] Packets queued while a caller holds the writes go out
// together, in order, in one write, when it flushes.
func TestHeldWritesGoOutInOneWrite(t *testing.T) {
	cl, r, w := newTestClient()
	defer w.Close()
	cl.ops.options.ClientNetWriteBufferSize = 2048
	require.True(t, cl.HoldWrites())
	require.False(t, cl.HoldWrites(), "one writer at a time")
	puback := func(id uint16) packets.Packet {
		return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id}
	}
	for id := uint16(1); id <= 3; id++ {
		require.True(t, cl.QueuePacket(puback(id)))
	}
	require.False(t, cl.QueuePacket(puback(4)), "the queue holds 3")
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := r.Read(buf) // a net.Pipe read returns what one write wrote
		got <- buf[:n]
	}()
	select {
	case <-got:
		t.Fatal("written while held")
	case <-time.After(20 * time.Millisecond):
	}
	cl.FlushWrites()
	require.Equal(t, []byte{0x40, 2, 0, 1, 0x40, 2, 0, 2, 0x40, 2, 0, 3}, <-got, "in one write, in order")
	require.False(t, cl.State.writing.Load(), "the writer role is given up")
	require.Zero(t, cl.State.outbound.len())
}
