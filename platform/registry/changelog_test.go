package registry

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

func testKeys(t testing.TB, seed byte) *Keys {
	t.Helper()
	k, err := NewKeys(bytes.Repeat([]byte{seed}, 32))
	require.NoError(t, err)
	return k
}

// seeded opens a registry at path with org acme, site north and product sensor.
func seeded(t *testing.T, path string, opts ...Option) *Registry {
	t.Helper()
	ctx := context.Background()
	r, err := Open(path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	_, err = r.PutAsset(ctx, api.Asset{ID: "acme", Kind: api.AssetOrg})
	require.NoError(t, err)
	_, err = r.PutAsset(ctx, api.Asset{ID: "north", Kind: api.AssetSite, Parent: "acme"})
	require.NoError(t, err)
	require.NoError(t, r.PutProduct(ctx, api.Product{Key: "sensor", Model: api.ThingModel{Measurepoints: []api.Measurepoint{{ID: "T", Type: api.TypeFloat}}}}, false))
	return r
}

func TestKeys(t *testing.T) {
	_, err := NewKeys([]byte("short"))
	require.ErrorIs(t, err, ErrClusterKey)

	path := filepath.Join(t.TempDir(), "sub", "cluster.key")
	made, err := EnsureKeyFile(path)
	require.NoError(t, err)
	require.True(t, made)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	made, err = EnsureKeyFile(path)
	require.NoError(t, err)
	require.False(t, made, "an existing key is kept")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after)
	k, err := LoadKeyFile(path)
	require.NoError(t, err)
	require.NotEqual(t, k.mac, testKeys(t, 1).mac)
	_, err = LoadKeyFile(filepath.Join(t.TempDir(), "none"))
	require.ErrorIs(t, err, ErrClusterKey)
}

func TestChangeRecords(t *testing.T) {
	k := testKeys(t, 1)
	device := api.RegistryChange{Kind: api.ChangeDevice, Key: "sensor/d1", Origin: "n1",
		Device: &api.Device{ProductKey: "sensor", DeviceKey: "d1", Secret: "topsecret-0123456789", Org: "acme", Enabled: true}}
	sealed, err := k.SealChange(device)
	require.NoError(t, err)
	require.NotContains(t, string(sealed), "topsecret", "the secret travels sealed")
	require.Equal(t, "topsecret-0123456789", device.Device.Secret, "the caller's change is not modified")
	got, err := k.OpenChange(ChangeKey(device), sealed)
	require.NoError(t, err)
	require.Equal(t, device, got)

	tokenHash := hashToken("forged")
	forgedJSON, err := json.Marshal(api.RegistryChange{Kind: api.ChangeToken, Key: tokenHash, TokenName: "admin"})
	require.NoError(t, err)
	tokenKey := []byte("token/" + tokenHash)
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-3] ^= 1
	macced := func(body string, key []byte) []byte {
		out := append([]byte{ChangeRecordVersion}, k.sum([]byte{ChangeRecordVersion}, key, []byte(body))...)
		return append(out, body...)
	}
	resealed := func(c api.RegistryChange, key []byte) []byte {
		body, err := json.Marshal(c)
		require.NoError(t, err)
		return macced(string(body), key)
	}
	for _, tc := range []struct {
		name   string
		key    []byte
		record []byte
		want   error
		reason string
	}{
		{"bare json, as kcat would write it", tokenKey, forgedJSON, ErrChangeMalformed, RejectMalformed},
		{"format with a made-up mac", tokenKey, append(append([]byte{ChangeRecordVersion}, bytes.Repeat([]byte{7}, macSize)...), forgedJSON...), ErrChangeMAC, RejectBadMAC},
		{"made with another cluster key", ChangeKey(device), mustSeal(t, testKeys(t, 2), device), ErrChangeMAC, RejectBadMAC},
		{"one bit flipped", ChangeKey(device), tampered, ErrChangeMAC, RejectBadMAC},
		{"moved under another message key", []byte("device/sensor/d2"), sealed, ErrChangeMAC, RejectBadMAC},
		{"empty", nil, nil, ErrChangeMalformed, RejectMalformed},
		{"short", tokenKey, []byte{ChangeRecordVersion, 1, 2}, ErrChangeMalformed, RejectMalformed},
		{"plaintext secret", ChangeKey(device), macced(strings.Replace(string(sealed[1+macSize:]), `"deviceKey":"d1"`, `"deviceKey":"d1","secret":"x"`, 1), ChangeKey(device)), ErrInvalid, RejectInvalid},
		{"unknown field", tokenKey, macced(`{"kind":"token","key":"`+tokenHash+`","role":"admin"}`, tokenKey), ErrChangeMalformed, RejectMalformed},
		{"two values", tokenKey, macced(`{"kind":"token","key":"`+tokenHash+`"}{}`, tokenKey), ErrChangeMalformed, RejectMalformed},
		{"unknown kind", []byte("user/x"), resealed(api.RegistryChange{Kind: "user", Key: "x"}, []byte("user/x")), ErrInvalid, RejectInvalid},
		{"token key not a hash", []byte("token/x"), resealed(api.RegistryChange{Kind: api.ChangeToken, Key: "x"}, []byte("token/x")), ErrInvalid, RejectInvalid},
		{"device without secret", ChangeKey(device), resealed(api.RegistryChange{Kind: api.ChangeDevice, Key: "sensor/d1", Device: &api.Device{ProductKey: "sensor", DeviceKey: "d1"}}, ChangeKey(device)), ErrInvalid, RejectInvalid},
		{"device under another key", []byte("device/sensor/d2"), resealed(api.RegistryChange{Kind: api.ChangeDevice, Key: "sensor/d2", Device: device.Device}, []byte("device/sensor/d2")), ErrInvalid, RejectInvalid},
		{"sealed secret that does not open", ChangeKey(device), resealed(api.RegistryChange{Kind: api.ChangeDevice, Key: "sensor/d1", Device: &api.Device{ProductKey: "sensor", DeviceKey: "d1"}, SealedSecret: bytes.Repeat([]byte{1}, 40)}, ChangeKey(device)), ErrSealed, RejectBadSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k.OpenChange(tc.key, tc.record)
			require.ErrorIs(t, err, tc.want)
			require.Equal(t, tc.reason, rejectReason(err))
		})
	}
}

func mustSeal(t testing.TB, k *Keys, c api.RegistryChange) []byte {
	t.Helper()
	b, err := k.SealChange(c)
	require.NoError(t, err)
	return b
}

func TestFollowerRefusesForgedRecordsAndGoesOn(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t, 1)
	r := seeded(t, filepath.Join(t.TempDir(), "reg.db"), WithKeys(k))
	r.SetPublisher("me", nil)
	reg := prometheus.NewRegistry()
	f := NewFollower(r, k, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)

	forged := "forged-admin-token"
	body, err := json.Marshal(api.RegistryChange{Kind: api.ChangeToken, Key: hashToken(forged), TokenName: "admin"})
	require.NoError(t, err)
	key := []byte("token/" + hashToken(forged))
	require.NoError(t, f.Handle(ctx, key, body, 1))
	require.NoError(t, f.Handle(ctx, key, append(append([]byte{ChangeRecordVersion}, make([]byte, macSize)...), body...), 2))
	require.False(t, r.ValidToken(forged), "a forged token record makes no token")
	require.Equal(t, 1.0, testutil.ToFloat64(f.rejected.WithLabelValues(RejectMalformed)))
	require.Equal(t, 1.0, testutil.ToFloat64(f.rejected.WithLabelValues(RejectBadMAC)))

	// A record of another node, properly made, is applied after the forged ones.
	good := api.RegistryChange{Kind: api.ChangeDevice, Key: "sensor/d9", Origin: "other",
		Device: &api.Device{ProductKey: "sensor", DeviceKey: "d9", Secret: "s9", Org: "acme", Site: "north"}}
	require.NoError(t, f.Handle(ctx, ChangeKey(good), mustSeal(t, k, good), 3))
	d, ok := r.Device("sensor", "d9")
	require.True(t, ok)
	require.Equal(t, "s9", d.Secret)

	// A well-made record the registry cannot store (a device of an unknown product) is counted and passed over.
	orphan := api.RegistryChange{Kind: api.ChangeDevice, Key: "ghost/d1", Origin: "other",
		Device: &api.Device{ProductKey: "ghost", DeviceKey: "d1", Secret: "s", Org: "acme"}}
	require.NoError(t, f.Handle(ctx, ChangeKey(orphan), mustSeal(t, k, orphan), 4))
	require.Equal(t, 1.0, testutil.ToFloat64(f.rejected.WithLabelValues(RejectNotApplied)))
	_, ok = r.Device("ghost", "d1")
	require.False(t, ok)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	again := good
	again.Key, again.Device = "sensor/d10", &api.Device{ProductKey: "sensor", DeviceKey: "d10", Secret: "s", Org: "acme"}
	require.ErrorIs(t, f.Handle(cancelled, ChangeKey(again), mustSeal(t, k, again), 5), context.Canceled, "a change not stored for a cancelled context is read again")
}

func TestSecretsSealedAtRest(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "reg.db")
	r := seeded(t, path) // an older registry: no keys, plaintext secrets
	_, err := r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "old", Secret: "old-plaintext-secret", Site: "north"})
	require.NoError(t, err)
	require.Equal(t, "old-plaintext-secret", storedSecret(t, path, "old"))
	require.NoError(t, r.Close())

	k := testKeys(t, 1)
	r, err = Open(path, WithKeys(k))
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	d, ok := r.Device("sensor", "old")
	require.True(t, ok)
	require.Equal(t, "old-plaintext-secret", d.Secret)
	require.True(t, strings.HasPrefix(storedSecret(t, path, "old"), restPrefix), "the plaintext row is sealed on open")
	_, err = r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "new", Secret: "new-secret-value", Site: "north"})
	require.NoError(t, err)
	for _, dk := range []string{"old", "new"} {
		require.NotContains(t, storedSecret(t, path, dk), "secret")
	}
	require.NoError(t, r.Close())
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(raw), "plaintext-secret")

	r, err = Open(path, WithKeys(k))
	require.NoError(t, err)
	d, _ = r.Device("sensor", "new")
	require.Equal(t, "new-secret-value", d.Secret)
	require.NoError(t, r.Close())
	_, err = Open(path, WithKeys(testKeys(t, 2)))
	require.ErrorIs(t, err, ErrSealed, "another cluster key does not open the secrets")
	_, err = Open(path)
	require.ErrorIs(t, err, ErrSealed)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

// storedSecret reads device (sensor, dk)'s secret column as stored.
func storedSecret(t *testing.T, path, dk string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	require.NoError(t, err)
	defer db.Close()
	var s string
	require.NoError(t, db.QueryRow(`SELECT secret FROM devices WHERE product_key = 'sensor' AND device_key = ?`, dk).Scan(&s))
	return s
}

// snapshot is what a registry holds, in memory and on disk.
type snapshot struct {
	Products []api.Product
	Devices  []api.Device
	Tree     []*api.Asset
	Token    bool
}

func TestChangeNotOnTheLogIsUndone(t *testing.T) {
	ctx := context.Background()
	errKafka := errors.New("kafka: message too large")
	name := "renamed"
	for _, tc := range []struct {
		name   string
		change func(r *Registry) error
	}{
		{"create device", func(r *Registry) error {
			_, err := r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "d2", Site: "north"})
			return err
		}},
		{"patch device", func(r *Registry) error {
			_, err := r.PatchDevice(ctx, "sensor", "d1", DevicePatch{Name: &name})
			return err
		}},
		{"delete device", func(r *Registry) error { return r.DeleteDevice(ctx, "sensor", "d1") }},
		{"create product", func(r *Registry) error { return r.PutProduct(ctx, api.Product{Key: "meter"}, false) }},
		{"replace product", func(r *Registry) error {
			return r.PutProduct(ctx, api.Product{Key: "sensor", Description: "changed"}, true)
		}},
		{"delete product", func(r *Registry) error { return r.DeleteProduct(ctx, "spare") }},
		{"create asset", func(r *Registry) error {
			_, err := r.PutAsset(ctx, api.Asset{ID: "south", Kind: api.AssetSite, Parent: "acme"})
			return err
		}},
		{"create token", func(r *Registry) error {
			tok, err := r.CreateToken(ctx, "ops")
			require.Empty(t, tok, "no token is handed out for a change not kept")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "reg.db")
			r := seeded(t, path, WithKeys(testKeys(t, 1)))
			require.NoError(t, r.PutProduct(ctx, api.Product{Key: "spare"}, false))
			_, err := r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "north", Attributes: map[string]any{"a": 1.0}})
			require.NoError(t, err)
			take := func(r *Registry) snapshot {
				return snapshot{r.Products(), r.Devices(DeviceFilter{}), r.AssetTree(), r.HasTokens()}
			}
			before := take(r)
			published := 0
			r.SetPublisher("me", func(context.Context, api.RegistryChange) error {
				published++
				return errKafka
			})
			err = tc.change(r)
			require.ErrorIs(t, err, ErrNotAnnounced)
			require.ErrorIs(t, err, errKafka, "the caller learns why")
			require.Equal(t, 1, published)
			require.Equal(t, before, take(r), "the local change is undone")
			require.NoError(t, r.Close())
			reopened, err := Open(path, WithKeys(testKeys(t, 1)))
			require.NoError(t, err)
			defer reopened.Close()
			require.Equal(t, before, take(reopened), "and not kept on disk")
		})
	}
}

func TestSizeLimits(t *testing.T) {
	ctx := context.Background()
	long := strings.Repeat("x", MaxNameBytes+1)
	bigAttrs := map[string]any{"blob": strings.Repeat("y", MaxAttributesBytes)}
	manyPoints := make([]api.Measurepoint, 0, 3000)
	for i := range cap(manyPoints) {
		manyPoints = append(manyPoints, api.Measurepoint{ID: fmt.Sprintf("P%0127d", i), Type: api.TypeFloat})
	}
	for _, tc := range []struct {
		name   string
		change func(r *Registry) error
	}{
		{"device name", func(r *Registry) error {
			_, err := r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "d2", Site: "north", Name: long})
			return err
		}},
		{"device attributes", func(r *Registry) error {
			_, err := r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "d2", Site: "north", Attributes: bigAttrs})
			return err
		}},
		{"patched name", func(r *Registry) error {
			_, err := r.PatchDevice(ctx, "sensor", "d1", DevicePatch{Name: &long})
			return err
		}},
		{"patched attributes", func(r *Registry) error {
			_, err := r.PatchDevice(ctx, "sensor", "d1", DevicePatch{Attributes: &bigAttrs})
			return err
		}},
		{"product description", func(r *Registry) error {
			return r.PutProduct(ctx, api.Product{Key: "meter", Description: strings.Repeat("d", MaxDescriptionBytes+1)}, false)
		}},
		{"product model", func(r *Registry) error {
			return r.PutProduct(ctx, api.Product{Key: "meter", Model: api.ThingModel{Measurepoints: manyPoints}}, false)
		}},
		{"asset name", func(r *Registry) error {
			_, err := r.PutAsset(ctx, api.Asset{ID: "south", Kind: api.AssetSite, Parent: "acme", Name: long})
			return err
		}},
		{"token name", func(r *Registry) error {
			_, err := r.CreateToken(ctx, long)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := seeded(t, filepath.Join(t.TempDir(), "reg.db"))
			_, err := r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "north"})
			require.NoError(t, err)
			before := snapshot{r.Products(), r.Devices(DeviceFilter{}), r.AssetTree(), r.HasTokens()}
			published := 0
			r.SetPublisher("me", func(context.Context, api.RegistryChange) error { published++; return nil })
			require.ErrorIs(t, tc.change(r), ErrInvalid)
			require.Zero(t, published, "nothing is announced")
			require.Equal(t, before, snapshot{r.Products(), r.Devices(DeviceFilter{}), r.AssetTree(), r.HasTokens()}, "nothing is stored")
		})
	}
}

func FuzzOpenChange(f *testing.F) {
	k := testKeys(f, 1)
	device := api.RegistryChange{Kind: api.ChangeDevice, Key: "sensor/d1",
		Device: &api.Device{ProductKey: "sensor", DeviceKey: "d1", Secret: "s", Org: "acme"}}
	token := api.RegistryChange{Kind: api.ChangeToken, Key: hashToken("t"), TokenName: "admin"}
	f.Add(ChangeKey(device), mustSeal(f, k, device))
	f.Add(ChangeKey(token), mustSeal(f, k, token))
	f.Add(ChangeKey(token), []byte(`{"kind":"token","key":"`+hashToken("t")+`"}`))
	f.Add([]byte("device/a/b"), []byte{ChangeRecordVersion})
	f.Fuzz(func(t *testing.T, key, record []byte) {
		c, err := k.OpenChange(key, record)
		if err != nil {
			reason := rejectReason(err)
			require.NotEqual(t, RejectNotApplied, reason, "every refusal has a reason: %v", err)
			return
		}
		// Whatever opens was made with the key: it seals and opens again to the same change.
		again, err := k.OpenChange(ChangeKey(c), mustSeal(t, k, c))
		require.NoError(t, err)
		require.Equal(t, c, again)
	})
}

// FuzzFollowBody feeds the follower records whose MAC is right, so that
// the bytes reach the decoder and the registry: any body is applied or
// refused and counted, never a panic nor an error that would stop the node.
func FuzzFollowBody(f *testing.F) {
	k := testKeys(f, 1)
	r, err := Open(filepath.Join(f.TempDir(), "reg.db"), WithKeys(k))
	require.NoError(f, err)
	f.Cleanup(func() { r.Close() })
	reg := prometheus.NewRegistry()
	fl := NewFollower(r, k, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	for _, c := range []api.RegistryChange{
		{Kind: api.ChangeAsset, Key: "acme", Asset: &api.Asset{ID: "acme", Kind: api.AssetOrg, Org: "acme"}},
		{Kind: api.ChangeProduct, Key: "p", Product: &api.Product{Key: "p", Model: api.ThingModel{Measurepoints: []api.Measurepoint{{ID: "T", Type: api.TypeFloat}}}}},
		{Kind: api.ChangeDevice, Key: "p/d", Device: &api.Device{ProductKey: "p", DeviceKey: "d", Secret: "s", Org: "acme"}},
		{Kind: api.ChangeDevice, Key: "p/d", Deleted: true},
		{Kind: api.ChangeToken, Key: hashToken("t"), TokenName: "admin"},
	} {
		b := mustSeal(f, k, c)
		f.Add(ChangeKey(c), b[1+macSize:])
	}
	f.Fuzz(func(t *testing.T, key, body []byte) {
		record := append([]byte{ChangeRecordVersion}, k.sum([]byte{ChangeRecordVersion}, key, body)...)
		record = append(record, body...)
		before := rejectedTotal(t, fl)
		_, openErr := k.OpenChange(key, record)
		require.NoError(t, fl.Handle(context.Background(), key, record, 0))
		if openErr != nil {
			require.Equal(t, before+1, rejectedTotal(t, fl), "a refused record is counted: %v", openErr)
		}
	})
}

func rejectedTotal(t *testing.T, f *Follower) float64 {
	t.Helper()
	var sum float64
	for _, reason := range []string{RejectBadMAC, RejectMalformed, RejectBadSecret, RejectInvalid, RejectNotApplied} {
		sum += testutil.ToFloat64(f.rejected.WithLabelValues(reason))
	}
	return sum
}

// TestUndoUnderConcurrentChanges runs local changes that Kafka refuses
// against remote changes applied and readers at once: every refused change
// is undone, every applied one kept, and none overwrites another.
func TestUndoUnderConcurrentChanges(t *testing.T) {
	ctx := context.Background()
	r := seeded(t, filepath.Join(t.TempDir(), "reg.db"), WithKeys(testKeys(t, 1)))
	d1, err := r.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "north", Name: "original"})
	require.NoError(t, err)
	r.SetPublisher("me", func(context.Context, api.RegistryChange) error { return errors.New("kafka away") })

	const n = 50
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := range n {
			name := fmt.Sprintf("local-%d", i)
			_, err := r.PatchDevice(ctx, "sensor", "d1", DevicePatch{Name: &name})
			assert.ErrorIs(t, err, ErrNotAnnounced) // assert: not the test goroutine
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			dk := fmt.Sprintf("remote-%d", i)
			assert.NoError(t, r.Apply(ctx, api.RegistryChange{Kind: api.ChangeDevice, Key: "sensor/" + dk, Origin: "other",
				Device: &api.Device{ProductKey: "sensor", DeviceKey: dk, Secret: "s", Org: "acme", Site: "north"}}))
		}
	}()
	go func() {
		defer wg.Done()
		for range n {
			d, ok := r.Device("sensor", "d1")
			assert.True(t, ok)
			assert.Equal(t, d1.Secret, d.Secret)
		}
	}()
	wg.Wait()
	d, _ := r.Device("sensor", "d1")
	require.Equal(t, "original", d.Name, "every refused change is undone")
	require.Len(t, r.Devices(DeviceFilter{}), n+1, "every applied change is kept")
}
