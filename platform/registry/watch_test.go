package registry

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// Device watchers hear of every change and deletion, local or applied from
// the change log, and can read the registry while they are called.
func TestWatchDevices(t *testing.T) {
	r := open(t, filepath.Join(t.TempDir(), "registry.db"))
	ctx := context.Background()
	_, err := r.PutAsset(ctx, api.Asset{ID: "org", Kind: api.AssetOrg})
	require.NoError(t, err)
	require.NoError(t, r.PutProduct(ctx, api.Product{Key: "p"}, false))
	d, err := r.CreateDevice(ctx, api.Device{ProductKey: "p", DeviceKey: "d", Org: "org", Enabled: true})
	require.NoError(t, err)

	var mu sync.Mutex
	var seen []string
	r.WatchDevices(func(pk, dk string) {
		cur, ok := r.Device(pk, dk) // no deadlock: called without the lock
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, pk+"/"+dk+map[bool]string{true: " enabled", false: " off"}[ok && cur.Enabled])
	})
	off := false
	cases := []struct {
		name   string
		change func() error
		want   string
	}{
		{name: "patch", change: func() error {
			_, err := r.PatchDevice(ctx, "p", "d", DevicePatch{Enabled: &off})
			return err
		}, want: "p/d off"},
		{name: "apply upsert", change: func() error {
			return r.Apply(ctx, api.RegistryChange{Kind: api.ChangeDevice, Key: "p/d", Origin: "other", Device: &d})
		}, want: "p/d enabled"},
		{name: "delete", change: func() error { return r.DeleteDevice(ctx, "p", "d") }, want: "p/d off"},
		{name: "apply delete", change: func() error {
			return r.Apply(ctx, api.RegistryChange{Kind: api.ChangeDevice, Key: "p/e", Origin: "other", Deleted: true})
		}, want: "p/e off"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, c.change())
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, seen, i+1)
			require.Equal(t, c.want, seen[i])
		})
	}
	require.NoError(t, r.Apply(ctx, api.RegistryChange{Kind: api.ChangeToken, Key: "h", TokenName: "t", Origin: "other"}))
	require.Len(t, seen, len(cases), "other kinds of change are not device changes")
}
