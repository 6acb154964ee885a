package rules

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRuleTestFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*_test.yaml")
	require.NoError(t, err)
	shipped, err := filepath.Glob("shipped/*_test.yaml")
	require.NoError(t, err)
	for _, f := range append(files, shipped...) {
		results, err := RunTestFile(f)
		require.NoError(t, err, f)
		for _, r := range results {
			t.Run(filepath.Base(f)+"/"+r.Name, func(t *testing.T) {
				require.Empty(t, r.Failures, strings.Join(r.Failures, "\n"))
			})
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, yaml, err string }{
		{"no point", "rules:\n  - name: r\n    type: threshold\n    above: 1\n", `rules.yaml:2: rule "r": point is empty`},
		{"resolveOn on a threshold", "rules:\n  - name: r\n    type: threshold\n    point: T\n    above: 1\n    resolveOn: x\n", "belong to event rules"},
		{"resolveOn the firing event", "rules:\n  - name: r\n    type: event\n    event: fault\n    resolveOn: fault\n", "resolveOn another event"},
		{"negative resolveAfter", "rules:\n  - name: r\n    type: event\n    event: fault\n    resolveAfter: -1m\n", "resolveAfter must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("rules.yaml", []byte(tc.yaml))
			require.ErrorContains(t, err, tc.err)
		})
	}
}

// TestParseRejectsNullRule is the regression test of a crash found by FuzzParse:
// a null entry in the rules list was dereferenced (at node start, a crash loop).
func TestParseRejectsNullRule(t *testing.T) {
	for _, y := range []string{"rules:\n  -", "rules: [~]\n", "rules:\n  - name: a\n    type: event\n    event: e\n  - null\n"} {
		t.Run(y, func(t *testing.T) {
			_, err := Parse("rules.yaml", []byte(y))
			require.ErrorIs(t, err, ErrInvalid)
			require.ErrorContains(t, err, "is empty")
		})
	}
}
