package registry

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"

	"github.com/gale-iot/gale/platform/api"
)

func open(t *testing.T, path string) *Registry {
	t.Helper()
	r, err := Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

func TestProductFiles(t *testing.T) {
	testkit.Fixtures(t, "testdata/*.yaml", ErrInvalid, func(b []byte) error {
		_, err := ParseProduct(b)
		return err
	})
	shipped, err := ShippedProducts()
	require.NoError(t, err)
	keys := []string{}
	for _, p := range shipped {
		keys = append(keys, p.Key)
	}
	require.ElementsMatch(t, []string{"wind-turbine", "modbus-gateway", "met-mast"}, keys)
}

func TestModelValue(t *testing.T) {
	b, err := os.ReadFile("testdata/sensor.good.yaml")
	require.NoError(t, err)
	p, err := ParseProduct(b)
	require.NoError(t, err)
	m := compile(p)
	cases := []struct {
		point, raw string
		want       float64
		err        error
	}{
		{"T", "21.5", 21.5, nil},
		{"T", "-40", -40, nil},
		{"T", "85.0001", 0, ErrBadValue},
		{"T", `"21"`, 0, ErrBadValue},
		{"T", "true", 0, ErrBadValue},
		{"T", "null", 0, ErrBadValue},
		{"On", "true", 1, nil},
		{"On", "0", 0, nil},
		{"On", "2", 0, ErrBadValue},
		{"Mode", "3", 3, nil},
		{"Count", "3.5", 0, ErrBadValue},
		{"Nope", "1", 0, ErrUnknownPoint},
	}
	for _, c := range cases {
		t.Run(c.point+"="+c.raw, func(t *testing.T) {
			v, err := m.Value(c.point, []byte(c.raw))
			if c.err != nil {
				require.ErrorIs(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, v)
		})
	}
}

func TestRegistryCRUDPersists(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "reg.db")
	r := open(t, path)

	_, err := r.PutAsset(ctx, api.Asset{ID: "acme", Kind: api.AssetOrg})
	require.NoError(t, err)
	_, err = r.PutAsset(ctx, api.Asset{ID: "north", Kind: api.AssetSite, Parent: "acme"})
	require.NoError(t, err)
	_, err = r.PutAsset(ctx, api.Asset{ID: "north-a", Kind: api.AssetSite, Parent: "north"})
	require.NoError(t, err)
	_, err = r.PutAsset(ctx, api.Asset{ID: "x", Kind: api.AssetSite, Parent: "nowhere"})
	require.ErrorIs(t, err, ErrInvalid)
	_, err = r.PutAsset(ctx, api.Asset{ID: "acme", Kind: api.AssetOrg})
	require.ErrorIs(t, err, ErrExists)

	p := api.Product{Key: "sensor", Model: api.ThingModel{Measurepoints: []api.Measurepoint{{ID: "T", Type: api.TypeFloat}}}}
	require.NoError(t, r.PutProduct(ctx, p, false))
	require.ErrorIs(t, r.PutProduct(ctx, p, false), ErrExists)
	require.ErrorIs(t, r.PutProduct(ctx, api.Product{Key: "ghost"}, true), ErrNotFound)

	gw, err := r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "gw", Site: "north", Enabled: true})
	require.NoError(t, err)
	require.Equal(t, "acme", gw.Org, "org comes from the site")
	require.Len(t, gw.Secret, 32)
	d, err := r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "north-a", GatewayProductKey: "sensor", GatewayDeviceKey: "gw"})
	require.NoError(t, err)
	_, err = r.CreateDevice(ctx, d)
	require.ErrorIs(t, err, ErrExists)
	for _, bad := range []api.Device{
		{ProductKey: "nope", DeviceKey: "x", Site: "north"},
		{ProductKey: "sensor", DeviceKey: "x"},
		{ProductKey: "sensor", DeviceKey: "x", Site: "acme"},
		{ProductKey: "sensor", DeviceKey: "bad key", Site: "north"},
		{ProductKey: "sensor", DeviceKey: "x", Site: "north", GatewayProductKey: "sensor", GatewayDeviceKey: "ghost"},
	} {
		_, err := r.CreateDevice(ctx, bad)
		require.ErrorIs(t, err, ErrInvalid, "%+v", bad)
	}
	enabled := true
	name := "Device one"
	d, err = r.PatchDevice(ctx, "sensor", "d1", DevicePatch{Enabled: &enabled, Name: &name})
	require.NoError(t, err)
	require.True(t, d.Enabled)
	require.ErrorIs(t, r.DeleteProduct(ctx, "sensor"), ErrInUse)

	tree := r.AssetTree()
	require.Len(t, tree, 1)
	require.Equal(t, "acme", tree[0].ID)
	require.Equal(t, "north", tree[0].Children[0].ID)
	require.Equal(t, []string{"sensor/gw"}, tree[0].Children[0].Devices)
	require.Equal(t, []string{"sensor/d1"}, tree[0].Children[0].Children[0].Devices)
	require.Equal(t, map[string]bool{"north": true, "north-a": true}, r.Subtree("north"))
	require.Len(t, r.Devices(DeviceFilter{Gateway: "sensor/gw"}), 1)
	require.Len(t, r.Devices(DeviceFilter{Site: "north"}), 1)

	token, err := r.CreateToken(ctx, "admin")
	require.NoError(t, err)
	require.True(t, r.ValidToken(token))
	require.False(t, r.ValidToken(token+"x"))
	require.False(t, r.ValidToken(""))
	require.NoError(t, r.Close())

	r2 := open(t, path)
	got, ok := r2.Device("sensor", "d1")
	require.True(t, ok)
	require.Equal(t, d, got)
	require.True(t, r2.ValidToken(token))
	_, ok = r2.Model("sensor")
	require.True(t, ok)
	require.Len(t, r2.AssetTree()[0].Children, 1)

	require.NoError(t, r2.DeleteDevice(ctx, "sensor", "d1"))
	require.NoError(t, r2.DeleteDevice(ctx, "sensor", "gw"))
	require.ErrorIs(t, r2.DeleteDevice(ctx, "sensor", "gw"), ErrNotFound)
	require.NoError(t, r2.DeleteProduct(ctx, "sensor"))
}

// TestOrgProducts: a product of an org is used by that org's devices only,
// keeps its org, persists with it and carries it on the change log to the
// other nodes; products without an org are the public library's.
func TestOrgProducts(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t, 1)
	path := filepath.Join(t.TempDir(), "reg.db")
	a := seeded(t, path, WithKeys(k))
	b := seeded(t, filepath.Join(t.TempDir(), "b.db"), WithKeys(k))
	var log []api.RegistryChange
	a.SetPublisher("a", func(_ context.Context, c api.RegistryChange) error {
		log = append(log, c)
		return nil
	})
	_, err := a.PutAsset(ctx, api.Asset{ID: "beta", Kind: api.AssetOrg})
	require.NoError(t, err)
	require.NoError(t, a.PutProduct(ctx, api.Product{Key: "meter", Org: "acme"}, false))
	require.ErrorIs(t, a.PutProduct(ctx, api.Product{Key: "meter", Org: "beta"}, true), ErrInvalid, "the org does not change")
	require.ErrorIs(t, a.PutProduct(ctx, api.Product{Key: "meter"}, true), ErrInvalid, "nor does it go to the library")
	require.ErrorIs(t, a.PutProduct(ctx, api.Product{Key: "x", Org: "gamma"}, false), ErrInvalid, "an org that does not exist")

	_, err = a.CreateDevice(ctx, api.Device{ProductKey: "meter", DeviceKey: "m1", Site: "north"})
	require.NoError(t, err)
	_, err = a.CreateDevice(ctx, api.Device{ProductKey: "meter", DeviceKey: "m2", Org: "beta"})
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), `product "meter" does not exist`)
	_, err = a.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "s2", Org: "beta"})
	require.NoError(t, err, "the library's products are every org's")

	// The change log carries the org, sealed and MAC'd, and the follower keeps it.
	f := NewFollower(b, k, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	for i, c := range log {
		require.NoError(t, f.Handle(ctx, ChangeKey(c), mustSeal(t, k, c), int64(i)))
	}
	m, ok := b.Model("meter")
	require.True(t, ok)
	require.Equal(t, "acme", m.Product.Org)
	_, ok = b.Device("meter", "m1")
	require.True(t, ok)

	require.NoError(t, a.Close())
	reopened, err := Open(path, WithKeys(k))
	require.NoError(t, err)
	defer reopened.Close()
	m, ok = reopened.Model("meter")
	require.True(t, ok)
	require.Equal(t, "acme", m.Product.Org, "the org persists")
}
