package registry

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// A rotated secret replaces the old one in memory, on disk (sealed) and in
// the change announced to the other nodes, which store it too; a failed
// announcement puts the old secret back.
func TestRotateSecret(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "reg.db")
	r := seeded(t, path)
	d, err := r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "d1", Secret: "first-secret-0123", Site: "north"})
	require.NoError(t, err)
	var announced []api.RegistryChange
	r.SetPublisher("node-1", func(_ context.Context, c api.RegistryChange) error { announced = append(announced, c); return nil })
	rotated, err := r.RotateSecret(ctx, "sensor", "d1")
	require.NoError(t, err)
	require.NotEqual(t, d.Secret, rotated.Secret)
	require.Len(t, announced, 1)
	require.Equal(t, rotated.Secret, announced[0].Device.Secret)

	// Another node applies the change and keeps it across a restart.
	other := seeded(t, filepath.Join(t.TempDir(), "other.db"))
	_, err = other.CreateDevice(ctx, d)
	require.NoError(t, err)
	require.NoError(t, other.Apply(ctx, announced[0]))
	require.NoError(t, r.Close())
	r, err = Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	got, _ := r.Device("sensor", "d1")
	require.Equal(t, rotated.Secret, got.Secret, "stored")
	got, _ = other.Device("sensor", "d1")
	require.Equal(t, rotated.Secret, got.Secret, "applied on the other node")

	r.SetPublisher("node-1", func(context.Context, api.RegistryChange) error { return errors.New("kafka down") })
	_, err = r.RotateSecret(ctx, "sensor", "d1")
	require.ErrorIs(t, err, ErrNotAnnounced)
	got, _ = r.Device("sensor", "d1")
	require.Equal(t, rotated.Secret, got.Secret, "undone")
	_, err = r.RotateSecret(ctx, "sensor", "nope")
	require.ErrorIs(t, err, ErrNotFound)
}
