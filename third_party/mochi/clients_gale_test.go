package mqtt

import (
	"errors"
	"io"
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
	require.Zero(t, len(cl.State.outbound))
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
