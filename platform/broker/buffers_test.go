package broker

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
)

// The configured connection buffers and outbound queue are the ones mochi uses.
func TestBufferSizesReachMochi(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadBufferSize, cfg.WriteBufferSize, cfg.MaxPendingWrites = 777, 999, 33
	b, err := New(cfg, idleDevices{testRegistry(t, api.ThingModel{})}, &fakeProducer{}, quietTestLogger(), prometheusRegistry())
	require.NoError(t, err)
	require.Equal(t, 777, b.server.Options.ClientNetReadBufferSize)
	require.Equal(t, 999, b.server.Options.ClientNetWriteBufferSize)
	require.EqualValues(t, 33, b.server.Options.Capabilities.MaximumClientWritesPending)

	def := DefaultConfig()
	require.GreaterOrEqual(t, def.ReadBufferSize, 2048, "smaller read buffers cost a busy connection throughput (BenchmarkPublishThroughput)")
	require.GreaterOrEqual(t, def.MaxPendingWrites, 256, "a bursting device's replies queue here (BenchmarkPublishThroughput)")
}

// With buffers far smaller than the packets, a device still gets a large
// service call whole, and the broker reads its large reply whole.
func TestSmallBuffersCarryLargePackets(t *testing.T) {
	r := startRig(t, func(c *Config) { c.ReadBufferSize, c.WriteBufferSize, c.MaxPendingWrites = 64, 64, 4 })
	big := strings.Repeat("x", 100<<10)
	calls := make(chan device.ServiceCall, 1)
	_, _ = r.sdk(t, r.device(t, "d1"), func(c device.ServiceCall) (int, string, any) {
		calls <- c
		return api.CodeOK, "", map[string]string{"echo": big}
	})
	params, err := json.Marshal(map[string]string{"blob": big})
	require.NoError(t, err)
	require.NoError(t, r.b.Publish(api.ServiceTopic(testProduct, "d1", "stop"), []byte(`{"id":"1","method":"thing.service.stop","params":`+string(params)+`}`), 1))
	select {
	case c := <-calls:
		var p map[string]string
		require.NoError(t, json.Unmarshal(c.Params, &p))
		require.Equal(t, big, p["blob"], "the service call arrived whole")
	case <-time.After(10 * time.Second):
		t.Fatal("no service call through a 64-byte write buffer")
	}
	select {
	case rep := <-r.rec.replies:
		require.True(t, strings.HasPrefix(rep, testProduct+"/d1/stop "), rep[:min(len(rep), 80)])
		require.Contains(t, rep, big, "the reply arrived whole")
	case <-time.After(10 * time.Second):
		t.Fatal("no reply through a 64-byte read buffer")
	}
}

// A device with many requests in flight gets every reply through the
// default outbound queue: none is dropped.
func TestDeviceUnderLoadGetsEveryReply(t *testing.T) {
	r := startRig(t, nil)
	ctx, dev := r.sdk(t, r.device(t, "d1"), nil)
	const workers, each = 16, 40
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				req := dev.MeasurepointRequest("thing.measurepoint.post", time.Now(), map[string]any{"Temp": 21.5})
				rep, err := dev.Request(ctx, api.MeasurepointPostTopic(testProduct, "d1"), req)
				if err == nil && rep.Code != api.CodeOK {
					err = fmt.Errorf("reply %d: %s", rep.Code, rep.Message)
				}
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, workers*each, r.prod.count())
	require.Zero(t, r.b.server.Info.MessagesDropped, "no message to the device was dropped")
}
