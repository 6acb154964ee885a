package edge_test

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/edge"
)

func item(dk string, t int64) edge.Item {
	return edge.Item{ProductKey: "wind-turbine", DeviceKey: dk, Time: t, Params: []byte(fmt.Sprintf(`{"measurepoints":{"WTUR.W":%d},"time":%d}`, t, t))}
}

func ids(items []edge.Item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func TestQueueOrderAndPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := edge.OpenQueue(path, 1<<20, false)
	require.NoError(t, err)
	for i := range int64(10) {
		pushed := q.Pushed()
		_, err := q.Push(item("WT01", 1000+i))
		require.NoError(t, err)
		select {
		case <-pushed:
		default:
			t.Fatal("Push wakes the waiters")
		}
	}
	all, err := q.Items(0, math.MaxInt64, 100)
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, ids(all), "oldest first")
	require.Equal(t, int64(1000), all[0].Time)
	part, err := q.Items(3, 6, 100)
	require.NoError(t, err)
	require.Equal(t, []int64{4, 5, 6}, ids(part))

	require.NoError(t, q.Delete(10, 1, 2, 42))
	n, size := q.Len()
	require.Equal(t, int64(7), n)
	var want int64
	for _, it := range all[2:9] {
		want += int64(len(it.Params))
	}
	require.Equal(t, want, size)
	last, err := q.LastID()
	require.NoError(t, err)
	require.Equal(t, int64(10), last, "ids are never reused, even after the newest is deleted")
	require.NoError(t, q.Close())

	q, err = edge.OpenQueue(path, 1<<20, true)
	require.NoError(t, err)
	defer q.Close()
	n, size2 := q.Len()
	require.Equal(t, int64(7), n, "a reopened queue has what was left")
	require.Equal(t, size, size2)
	_, err = q.Push(item("WT02", 2000))
	require.NoError(t, err)
	all, err = q.Items(0, math.MaxInt64, 100)
	require.NoError(t, err)
	require.Equal(t, []int64{3, 4, 5, 6, 7, 8, 9, 11}, ids(all))
}

func TestQueueDropsOldestWhenFull(t *testing.T) {
	one := int64(len(item("WT01", 1000).Params))
	q, err := edge.OpenQueue(filepath.Join(t.TempDir(), "queue.db"), 50*one, false)
	require.NoError(t, err)
	defer q.Close()
	dropped := 0
	for i := range int64(80) {
		d, err := q.Push(item("WT01", 1000+i))
		require.NoError(t, err)
		dropped += d
	}
	n, size := q.Len()
	require.Equal(t, 30, dropped)
	require.Equal(t, int64(50), n)
	require.LessOrEqual(t, size, 50*one)
	all, err := q.Items(0, math.MaxInt64, 100)
	require.NoError(t, err)
	require.Equal(t, int64(1030), all[0].Time, "the oldest were dropped")
	require.Equal(t, int64(1079), all[49].Time)
}

// BenchmarkQueuePush measures durable pushes (one transaction each) of a
// turbine-sized sample, with and without an fsync per sample.
func BenchmarkQueuePush(b *testing.B) {
	params := make([]byte, 340) // a turbine's fast group, JSON
	for _, fsync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			q, err := edge.OpenQueue(filepath.Join(b.TempDir(), "queue.db"), 1<<30, fsync)
			require.NoError(b, err)
			defer q.Close()
			for i := 0; b.Loop(); i++ {
				if _, err := q.Push(edge.Item{ProductKey: "wind-turbine", DeviceKey: "WT01", Time: int64(i), Params: params}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
