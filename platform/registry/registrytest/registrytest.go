// Package registrytest opens throwaway registries for tests.
package registrytest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// Open opens an empty registry in a temp dir, closed at cleanup, with an org
// asset for each of orgs.
func Open(t testing.TB, orgs ...string) *registry.Registry {
	t.Helper()
	reg, err := registry.Open(filepath.Join(t.TempDir(), "registry.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, reg.Close()) })
	for _, org := range orgs {
		_, err = reg.PutAsset(context.Background(), api.Asset{ID: org, Kind: api.AssetOrg})
		require.NoError(t, err)
	}
	return reg
}
