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

// pushWakes pushes items into q, requires that the push wakes the waiters of
// Pushed and returns the number of items dropped.
func pushWakes(t *testing.T, q *edge.Queue, items ...edge.Item) int {
	t.Helper()
	pushed := q.Pushed()
	dropped, err := q.Push(items...)
	require.NoError(t, err)
	select {
	case <-pushed:
	default:
		t.Fatal("Push wakes the waiters")
	}
	return dropped
}

func TestQueueOrderAndPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := edge.OpenQueue(path, 1<<20, false)
	require.NoError(t, err)
	for i := range int64(10) {
		pushWakes(t, q, item("WT01", 1000+i))
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

func TestQueuePushesARoundAtOnce(t *testing.T) {
	one := int64(len(item("WT01", 1000).Params))
	q, err := edge.OpenQueue(filepath.Join(t.TempDir(), "queue.db"), 8*one, false)
	require.NoError(t, err)
	defer q.Close()
	dropped := pushWakes(t, q, item("WT01", 1000), item("WT02", 1000), item("WT03", 1000))
	require.Zero(t, dropped)
	all, err := q.Items(0, math.MaxInt64, 100)
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3}, ids(all), "in the round's order")
	require.Equal(t, "WT02", all[1].DeviceKey)

	// A round that overflows the queue keeps the newest items, its own included.
	round := make([]edge.Item, 7)
	for i := range round {
		round[i] = item("WT04", int64(2000+i))
	}
	dropped, err = q.Push(round...)
	require.NoError(t, err)
	require.Equal(t, 2, dropped)
	n, size := q.Len()
	require.Equal(t, int64(8), n)
	require.Equal(t, 8*one, size)
	all, err = q.Items(0, math.MaxInt64, 100)
	require.NoError(t, err)
	require.Equal(t, []int64{3, 4, 5, 6, 7, 8, 9, 10}, ids(all))

	dropped, err = q.Push()
	require.NoError(t, err)
	require.Zero(t, dropped)
	require.NoError(t, q.Close())
	_, err = q.Push(item("WT05", 3000))
	require.Error(t, err, "a closed queue refuses")
	n2, size2 := q.Len()
	require.Equal(t, n, n2, "a failed push counts nothing")
	require.Equal(t, size, size2)
}

// BenchmarkQueuePush measures durable pushes of turbine-sized samples,
// one transaction per push, with and without an fsync per transaction:
// one sample a push, and a poll round of 10.
func BenchmarkQueuePush(b *testing.B) {
	params := make([]byte, 340) // a turbine's fast group, JSON
	for _, fsync := range []bool{false, true} {
		for _, n := range []int{1, 10} {
			b.Run(fmt.Sprintf("fsync=%v/round=%d", fsync, n), func(b *testing.B) {
				q, err := edge.OpenQueue(filepath.Join(b.TempDir(), "queue.db"), 1<<30, fsync)
				require.NoError(b, err)
				defer q.Close()
				round := make([]edge.Item, n)
				for i := range round {
					round[i] = edge.Item{ProductKey: "wind-turbine", DeviceKey: fmt.Sprintf("WT%02d", i), Params: params}
				}
				for i := 0; b.Loop(); i++ {
					for j := range round {
						round[j].Time = int64(i)
					}
					if _, err := q.Push(round...); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
			})
		}
	}
}
