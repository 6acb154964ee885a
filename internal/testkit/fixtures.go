package testkit

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/config"
)

// Fixtures runs parse on every file glob matches (at least one), each as a
// subtest: a *.bad.yaml file must give an error (wrapping bad when it is not
// nil), any other file none.
func Fixtures(t *testing.T, glob string, bad error, parse func(b []byte) error) {
	t.Helper()
	fixtures(t, glob, func(string) (error, bool) { return bad, true }, func(_ *testing.T, path string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return parse(b)
	})
}

// FixtureTable runs load on every file glob matches (at least one), each as
// a subtest: a *.bad.yaml file must be in bad and give an error wrapping
// its entry (nil: any error), any other file none. load may assert more.
func FixtureTable(t *testing.T, glob string, bad map[string]error, load func(t *testing.T, path string) error) {
	t.Helper()
	fixtures(t, glob, func(name string) (error, bool) { err, ok := bad[name]; return err, ok }, load)
}

func fixtures(t *testing.T, glob string, bad func(name string) (error, bool), load func(t *testing.T, path string) error) {
	t.Helper()
	files, err := filepath.Glob(glob)
	require.NoError(t, err)
	require.NotEmpty(t, files, "no file matches %s", glob)
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			err := load(t, f)
			if !strings.HasSuffix(name, ".bad.yaml") {
				require.NoError(t, err)
				return
			}
			want, ok := bad(name)
			require.True(t, ok, "add %s to the table", name)
			require.Error(t, err)
			if want != nil {
				require.ErrorIs(t, err, want)
			}
		})
	}
}

// ConfigFiles is FixtureTable for config files read with internal/config:
// every error must also name the file, and a YAML error its line.
func ConfigFiles(t *testing.T, glob string, bad map[string]error, load func(t *testing.T, path string) error) {
	t.Helper()
	FixtureTable(t, glob, bad, func(t *testing.T, path string) error {
		err := load(t, path)
		if err != nil {
			require.True(t, strings.HasPrefix(err.Error(), path+":"), "the error names the file: %v", err)
			if errors.Is(err, config.ErrSyntax) {
				require.Regexp(t, `^`+regexp.QuoteMeta(path)+`:\d+: `, err.Error(), "a YAML error names its line")
			}
		}
		return err
	})
}
