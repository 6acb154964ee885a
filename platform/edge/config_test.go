package edge_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/platform/edge"
)

func TestConfigFiles(t *testing.T) {
	testkit.ConfigFiles(t, "testdata/*.*.yaml", map[string]error{
		"unknown-field.bad.yaml":        config.ErrSyntax,
		"no-data-dir.bad.yaml":          edge.ErrDataDir,
		"gateway-secret.bad.yaml":       edge.ErrGateway,
		"two-tokens.bad.yaml":           edge.ErrCloud,
		"api-url.bad.yaml":              edge.ErrCloud,
		"mqtt-addr.bad.yaml":            edge.ErrCloud,
		"no-targets.bad.yaml":           edge.ErrNoTargets,
		"target-addr.bad.yaml":          edge.ErrTarget,
		"target-twice.bad.yaml":         edge.ErrTarget,
		"unit-id-twice.bad.yaml":        regmap.ErrDuplicateUnitID,
		"device-twice.bad.yaml":         edge.ErrUnit,
		"unknown-map.bad.yaml":          regmap.ErrUnknownMap,
		"unit-secret.bad.yaml":          edge.ErrUnit,
		"mapfile-product.bad.yaml":      edge.ErrUnit,
		"service-point.bad.yaml":        edge.ErrService,
		"queue.bad.yaml":                edge.ErrQueue,
		"live-batch.bad.yaml":           edge.ErrQueue,
		"max-in-flight.bad.yaml":        edge.ErrCloud,
		"ha.bad.yaml":                   edge.ErrHA,
		"stale.bad.yaml":                edge.ErrStale,
		"tls-cert-without-key.bad.yaml": edge.ErrCloud,
	}, func(t *testing.T, path string) error {
		c, err := config.Load[edge.Config](path)
		if err == nil {
			require.NotZero(t, c.Queue.MaxBytes, "defaults filled")
		}
		return err
	})
}

func TestConfigDefaults(t *testing.T) {
	c, err := config.Load[edge.Config]("testdata/minimal.good.yaml")
	require.NoError(t, err)
	require.Equal(t, edge.DefaultStaleAfter, c.StaleAfter)
	require.Equal(t, edge.DefaultModbusTimeout, c.Targets[0].Timeout)
	require.Equal(t, "wind-turbine", c.Targets[0].Units[0].ProductKey, "a shipped map names the product")
	require.Equal(t, map[string]string{"limit": "WTUR.DmdW"}, c.Services["wind-turbine"]["setPowerLimit"])
	require.Nil(t, c.HA)

	c, err = config.Load[edge.Config]("testdata/demo.good.yaml")
	require.NoError(t, err)
	require.Equal(t, edge.DefaultHATimeout, c.HA.Timeout)

	_, err = edge.New(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.ErrorIs(t, err, edge.ErrCloud, "New reads the token file, which does not exist")
}
