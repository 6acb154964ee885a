package runs

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The store keeps its bound, newest first, in posting order within one
// millisecond, and survives a reopen; a stray file is no run.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, 2)
	require.NoError(t, err)
	frozen := time.UnixMilli(1_800_000_000_000)
	st.now = func() time.Time { return frozen }
	for _, name := range []string{"a", "b", "c"} {
		_, err := st.Add(Run{Kind: KindScenario, Name: name, Notes: []string{"n"}}, "tester")
		require.NoError(t, err)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "evil.json"), []byte("{"), 0o600))
	again, err := Open(dir, 2)
	require.NoError(t, err)
	list, err := again.List(func(string) bool { return true })
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "c", list[0].Name)
	require.Equal(t, "b", list[1].Name)
	require.Nil(t, list[0].Notes)
	r, ok, err := again.Get(list[0].ID)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []string{"n"}, r.Notes)
	require.Equal(t, "tester", r.PostedBy)
	_, ok, err = again.Get("evil")
	require.NoError(t, err)
	require.False(t, ok)
}
