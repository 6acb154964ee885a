package rules

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/bus"
)

const goodRoute = "routes:\n  - name: hot\n    match: {point: Temp, condition: {above: 50}}\n    actions:\n      - webhook: {url: \"http://127.0.0.1:1/hook\"}\n"

// TestParseRoutesRejectsNullRoute is the regression test of a crash found by
// FuzzParseRoutes: a null entry in the routes list was dereferenced.
func TestParseRoutesRejectsNullRoute(t *testing.T) {
	for _, y := range []string{"routes:\n  -", "routes: [~]\n"} {
		t.Run(y, func(t *testing.T) {
			_, err := ParseRoutes("routes.yaml", []byte(y))
			require.ErrorIs(t, err, ErrInvalid)
			require.ErrorContains(t, err, "route 1 is empty")
		})
	}
}

func TestRouterRefusesBadRouteFilesAtStart(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"good.yaml": goodRoute,
		"null.yaml": "routes:\n  -",
		"dup.yaml":  goodRoute,
		"bad.yaml":  "routes:\n  - name: x\n    from: [nowhere]\n",
	})
	logs := &bytes.Buffer{} // written only while NewRouter runs, on this goroutine
	r, err := NewRouter(dir, nil, bus.DefaultConfig(), nil, nil, nil, slog.New(slog.NewTextHandler(logs, nil)), prometheus.NewRegistry())
	require.NoError(t, err, "bad route files do not keep the node from starting")
	require.Len(t, r.Routes(), 1)
	require.Equal(t, "hot", r.Routes()[0].Name)
	for _, w := range []string{"bad.yaml:2: route", "good.yaml:2: route", "null.yaml:2: route 1 is empty"} {
		require.Contains(t, logs.String(), w)
	}
	err = r.Reload()
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, `good.yaml:2: route "hot" already defined in dup.yaml:2`)
	require.Len(t, r.Routes(), 1, "the routes stay as they were")
}

// FuzzParseRoutes feeds the route file parser any bytes: valid routes or an ErrInvalid error, never a panic.
func FuzzParseRoutes(f *testing.F) {
	addSeeds(f, nil, goodRoute,
		"routes:\n  - name: r\n    from: [alerts]\n    actions:\n      - republish: {topic: 'a/+/#'}\n",
		"routes:\n  - name: r\n    match: {devices: [a, b], condition: {outside: [1, 2]}}\n    actions: [{kafka: {topic: t}}, {invoke: {service: s}}]\n",
		"routes: &a [*a]\n", "routes:\n  - name: ''\n",
	)
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ParseRoutes("fuzz.yaml", b)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		for _, r := range rs {
			require.NotEmpty(t, r.Name)
			require.NotEmpty(t, r.From)
		}
	})
}
