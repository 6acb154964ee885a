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
