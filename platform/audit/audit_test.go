package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The log keeps its newest maxEntries entries, also across a reopen;
// queries filter by org, actor (or token id) and time, newest first.
func TestBoundAndFilters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path, 5)
	require.NoError(t, err)
	for i := range 12 {
		org := []string{"acme", "beta"}[i%2]
		require.NoError(t, l.Add(ctx, Entry{Time: int64(1000 + i), TokenID: fmt.Sprintf("t%d", i%3), Actor: fmt.Sprintf("u%d", i), Org: org,
			Method: "POST", Route: "POST /api/v1/devices", Status: 201}))
	}
	ids := func(es []Entry) []int64 {
		out := []int64{}
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	all, err := l.Query(ctx, Filter{AllOrgs: true})
	require.NoError(t, err)
	require.Equal(t, []int64{12, 11, 10, 9, 8}, ids(all), "the newest 5, newest first")
	require.NoError(t, l.Close())

	l, err = Open(path, 5)
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, l.Add(ctx, Entry{Time: 2000, Actor: "late", Org: "acme"}))
	for _, tc := range []struct {
		f    Filter
		want []int64
	}{
		{Filter{AllOrgs: true}, []int64{13, 12, 11, 10, 9}},
		{Filter{Org: "acme"}, []int64{13, 11, 9}},
		{Filter{Org: "beta"}, []int64{12, 10}},
		{Filter{Org: "gamma"}, []int64{}},
		{Filter{AllOrgs: true, Actor: "u11"}, []int64{12}},
		{Filter{AllOrgs: true, Actor: "t2"}, []int64{12, 9}},
		{Filter{Org: "acme", Actor: "t2"}, []int64{9}},
		{Filter{AllOrgs: true, Since: 1010}, []int64{13, 12, 11}},
		{Filter{AllOrgs: true, Limit: 2}, []int64{13, 12}},
	} {
		got, err := l.Query(ctx, tc.f)
		require.NoError(t, err)
		require.Equal(t, tc.want, ids(got), "%+v", tc.f)
	}
	_, err = l.Query(ctx, Filter{})
	require.Error(t, err, "a query names its org")

	// A hostile request cannot make an entry large.
	require.NoError(t, l.Add(ctx, Entry{Actor: strings.Repeat("x", 1<<20), Org: "acme"}))
	got, err := l.Query(ctx, Filter{Org: "acme", Limit: 1})
	require.NoError(t, err)
	require.Len(t, got[0].Actor, maxField)

	_, err = Open(filepath.Join(t.TempDir(), "x.db"), 0)
	require.Error(t, err)
}
