package testkit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Edit is a case of Edits: a change to a good config and the error it must
// cause (nil: none).
type Edit[C any] struct {
	Name string
	Edit func(*C)
	Err  error
}

// Case is an Edit: named, a change, the error it must cause.
func Case[C any](name string, edit func(*C), err error) Edit[C] {
	return Edit[C]{Name: name, Edit: edit, Err: err}
}

// Edits applies each edit to a fresh base() as a subtest and checks what
// validate says of the result.
func Edits[C any](t *testing.T, base func() C, validate func(*C) error, edits []Edit[C]) {
	t.Helper()
	for _, e := range edits {
		t.Run(e.Name, func(t *testing.T) {
			c := base()
			e.Edit(&c)
			err := validate(&c)
			if e.Err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, e.Err)
		})
	}
}
