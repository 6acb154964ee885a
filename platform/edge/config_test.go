package edge_test

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/platform/edge"
)

func TestConfigFiles(t *testing.T) {
	want := map[string]error{
		"unknown-field":        nil, // a YAML decoding error
		"no-data-dir":          edge.ErrDataDir,
		"gateway-secret":       edge.ErrGateway,
		"two-tokens":           edge.ErrCloud,
		"api-url":              edge.ErrCloud,
		"mqtt-addr":            edge.ErrCloud,
		"no-targets":           edge.ErrNoTargets,
		"target-addr":          edge.ErrTarget,
		"target-twice":         edge.ErrTarget,
		"unit-id-twice":        regmap.ErrDuplicateUnitID,
		"device-twice":         edge.ErrUnit,
		"unknown-map":          regmap.ErrUnknownMap,
		"unit-secret":          edge.ErrUnit,
		"mapfile-product":      edge.ErrUnit,
		"service-point":        edge.ErrService,
		"queue":                edge.ErrQueue,
		"live-batch":           edge.ErrQueue,
		"max-in-flight":        edge.ErrCloud,
		"ha":                   edge.ErrHA,
		"stale":                edge.ErrStale,
		"tls-cert-without-key": edge.ErrCloud,
	}
	files, err := filepath.Glob("testdata/*.yaml")
	require.NoError(t, err)
	seen := 0
	for _, f := range files {
		name := filepath.Base(f)
		switch {
		case strings.HasSuffix(name, ".good.yaml"):
			t.Run(name, func(t *testing.T) {
				c, err := edge.Load(f)
				require.NoError(t, err)
				require.NotZero(t, c.Queue.MaxBytes, "defaults filled")
			})
		case strings.HasSuffix(name, ".bad.yaml"):
			seen++
			sentinel, ok := want[strings.TrimSuffix(name, ".bad.yaml")]
			require.True(t, ok, "add %s to the table", name)
			t.Run(name, func(t *testing.T) {
				_, err := edge.Load(f)
				require.Error(t, err)
				require.Contains(t, err.Error(), f, "the error names the file")
				if sentinel != nil {
					require.ErrorIs(t, err, sentinel)
				}
			})
		}
	}
	require.Equal(t, len(want), seen)
}

func TestConfigDefaults(t *testing.T) {
	c, err := edge.Load("testdata/minimal.good.yaml")
	require.NoError(t, err)
	require.Equal(t, edge.DefaultStaleAfter, c.StaleAfter)
	require.Equal(t, edge.DefaultModbusTimeout, c.Targets[0].Timeout)
	require.Equal(t, "wind-turbine", c.Targets[0].Units[0].ProductKey, "a shipped map names the product")
	require.Equal(t, map[string]string{"limit": "WTUR.DmdW"}, c.Services["wind-turbine"]["setPowerLimit"])
	require.Nil(t, c.HA)

	c, err = edge.Load("testdata/demo.good.yaml")
	require.NoError(t, err)
	require.Equal(t, edge.DefaultHATimeout, c.HA.Timeout)

	_, err = edge.New(c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.ErrorIs(t, err, edge.ErrCloud, "New reads the token file, which does not exist")
}
