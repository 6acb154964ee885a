package testkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Fixtures runs parse on every file glob matches (at least one), each as a
// subtest: a *.bad.yaml file must give an error (wrapping bad when it is not
// nil), any other file none.
func Fixtures(t *testing.T, glob string, bad error, parse func(b []byte) error) {
	t.Helper()
	files, err := filepath.Glob(glob)
	require.NoError(t, err)
	require.NotEmpty(t, files, "no file matches %s", glob)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			err = parse(b)
			switch {
			case !strings.HasSuffix(f, ".bad.yaml"):
				require.NoError(t, err)
			case bad != nil:
				require.ErrorIs(t, err, bad)
			default:
				require.Error(t, err)
			}
		})
	}
}
