package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// Device events are kept once each (a replay adds nothing), listed newest
// first per device, trimmed to the newest MaxDeviceEvents, and oversized
// params are not stored.
func TestDeviceEvents(t *testing.T) {
	ctx := context.Background()
	r := open(t, filepath.Join(t.TempDir(), "registry.db"))
	ev := func(dk string, at int64) api.DeviceEvent {
		return api.DeviceEvent{Type: api.EventTypeDevice, Org: "acme", Product: "wt", Device: dk, Site: "north", Event: "fault",
			Severity: "major", Time: at, Params: json.RawMessage(fmt.Sprintf(`{"code":%d}`, at))}
	}
	require.NoError(t, r.AddDeviceEvents(ctx, []api.DeviceEvent{ev("a", 1), ev("b", 2), ev("a", 3)}))
	require.NoError(t, r.AddDeviceEvents(ctx, []api.DeviceEvent{ev("a", 3)}), "a replayed event")

	got, err := r.DeviceEvents(ctx, "wt", "a", 10)
	require.NoError(t, err)
	require.Equal(t, []api.DeviceEvent{ev("a", 3), ev("a", 1)}, got)
	got, err = r.DeviceEvents(ctx, "wt", "a", 1)
	require.NoError(t, err)
	require.Len(t, got, 1)
	got, err = r.DeviceEvents(ctx, "wt", "nobody", 10)
	require.NoError(t, err)
	require.Empty(t, got)

	big := ev("b", 4)
	big.Params = json.RawMessage(`"` + strings.Repeat("x", MaxEventParams) + `"`)
	require.NoError(t, r.AddDeviceEvents(ctx, []api.DeviceEvent{big}))
	got, err = r.DeviceEvents(ctx, "wt", "b", 1)
	require.NoError(t, err)
	require.Nil(t, got[0].Params)

	defer func(n int) { MaxDeviceEvents = n }(MaxDeviceEvents)
	MaxDeviceEvents = 3
	require.NoError(t, r.AddDeviceEvents(ctx, []api.DeviceEvent{ev("a", 5), ev("a", 6)}))
	a, err := r.DeviceEvents(ctx, "wt", "a", 10)
	require.NoError(t, err)
	b, err := r.DeviceEvents(ctx, "wt", "b", 10)
	require.NoError(t, err)
	require.Equal(t, []api.DeviceEvent{ev("a", 6), ev("a", 5)}, a)
	require.Len(t, b, 1, "the oldest beyond the newest 3 are gone")
}
