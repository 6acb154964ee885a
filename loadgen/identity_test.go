package loadgen

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
)

func TestReadIdentities(t *testing.T) {
	want := []Identity{{"pk", "d1", "s1"}, {"pk", "d2", "s2"}}
	for _, c := range []struct {
		name, text string
		bad        bool
	}{
		{name: "csv", text: "pk,d1,s1\npk,d2,s2\n"},
		{name: "csv with header and comment", text: "productKey,deviceKey,secret\n# two devices\npk, d1, s1\npk,d2,s2\n"},
		{name: "json", text: `[{"productKey":"pk","deviceKey":"d1","secret":"s1"},{"productKey":"pk","deviceKey":"d2","secret":"s2","site":"x"}]`},
		{name: "csv short line", text: "pk,d1\n", bad: true},
		{name: "csv no secret", text: "pk,d1,\n", bad: true},
		{name: "duplicate", text: "pk,d1,s1\npk,d1,s2\n", bad: true},
		{name: "empty", text: "\n", bad: true},
		{name: "bad json", text: `[{"productKey":1}]`, bad: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := testkit.WriteFile(t, t.TempDir(), "devices", c.text)
			got, err := ReadIdentities(path)
			if c.bad {
				require.ErrorIs(t, err, ErrDevicesFile)
				return
			}
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
	_, err := ReadIdentities(filepath.Join(t.TempDir(), "none"))
	require.Error(t, err)
}
