package testkit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Parse is a case of Parses: an input and what it must parse to, or Bad
// when it must not parse.
type Parse[T any] struct {
	In   string
	Want T
	Bad  bool
}

// Parses parses each case's input as a subtest named by it: a Bad case must
// fail with an error wrapping bad, any other must give its Want.
func Parses[T any](t *testing.T, parse func(string) (T, error), bad error, cases []Parse[T]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.In, func(t *testing.T) {
			got, err := parse(c.In)
			if c.Bad {
				require.ErrorIs(t, err, bad)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.Want, got)
		})
	}
}
