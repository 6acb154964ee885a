package bus

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/config"
)

// produceAt writes n records to topic, produced at the given time.
func produceAt(t *testing.T, addrs []string, topic string, at time.Time, n int) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(addrs...), Topic: topic, RequiredAcks: kafka.RequireAll, BatchSize: n, BatchTimeout: time.Millisecond}
	defer func() { require.NoError(t, w.Close()) }()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Value: []byte("x"), Time: at}
	}
	require.NoError(t, w.WriteMessages(context.Background(), msgs...))
}

// logStart is the first offset the broker still has of topic's partition 0.
func logStart(k *Embedded, topic string) int64 {
	return k.cluster.PartitionInfo(topic, 0).LogStartOffset
}

// TestEmbeddedRetention: records of a Retained topic produced before the
// retention go, later ones stay, and a Kept topic keeps every record; a
// restart applies a changed retention to the same data dir.
func TestEmbeddedRetention(t *testing.T) {
	dir := t.TempDir()
	log := Log{Partitions: 1, Retention: time.Hour, Retained: []string{"data"}, Kept: []string{"changes"}}
	k, err := StartEmbeddedSecure("127.0.0.1:0", dir, false, log, Security{})
	require.NoError(t, err)
	require.True(t, k.Expires())
	now := time.Now()
	for _, topic := range []string{"data", "changes"} {
		produceAt(t, k.Addrs(), topic, now.Add(-3*time.Hour), 5)
		produceAt(t, k.Addrs(), topic, now.Add(-90*time.Minute), 4)
		produceAt(t, k.Addrs(), topic, now, 3)
	}
	k.cluster.ApplyRetention()
	require.EqualValues(t, 9, logStart(k, "data"), "the records older than an hour are gone")
	require.EqualValues(t, 0, logStart(k, "changes"), "a Kept topic keeps everything")
	k.Close()
	k.Close() // a second Close is harmless

	log.Retention = 4 * time.Hour
	k, err = StartEmbeddedSecure("127.0.0.1:0", dir, false, log, Security{})
	require.NoError(t, err)
	defer k.Close()
	require.EqualValues(t, 9, logStart(k, "data"))
	produceAt(t, k.Addrs(), "data", now.Add(-2*time.Hour), 2) // offsets 12-13: an hour would drop them
	k.cluster.ApplyRetention()
	require.EqualValues(t, 9, logStart(k, "data"), "the longer retention, read from the restarted broker's config, keeps them")
	produceAt(t, k.Addrs(), "data", now.Add(-5*time.Hour), 2) // offsets 14-15: behind the retention when produced
	k.cluster.ApplyRetention()
	require.EqualValues(t, 16, logStart(k, "data"), "kfake drops up to the last expired batch")
	require.EqualValues(t, 0, logStart(k, "changes"))
}

// TestEmbeddedRetentionSparesOldDataDirs: a data dir made before retention
// has its change log without a retention of its own, so nothing expires.
func TestEmbeddedRetentionSparesOldDataDirs(t *testing.T) {
	dir := t.TempDir()
	k, err := StartEmbedded("127.0.0.1:0", dir, false, 1, "data", "changes")
	require.NoError(t, err)
	produceAt(t, k.Addrs(), "changes", time.Now().Add(-3*time.Hour), 2)
	k.Close()

	k, err = StartEmbeddedSecure("127.0.0.1:0", dir, false, Log{Partitions: 1, Retention: time.Hour, Retained: []string{"data"}, Kept: []string{"changes"}}, Security{})
	require.NoError(t, err)
	defer k.Close()
	require.False(t, k.Expires(), "retention is off")
	require.EqualValues(t, 0, logStart(k, "changes"))
}

// TestEmbeddedRetentionBytes: a Retained topic's partition keeps its
// newest RetentionBytes, in whole log files; a Kept topic keeps all.
func TestEmbeddedRetentionBytes(t *testing.T) {
	log := Log{Partitions: 1, RetentionBytes: segmentBytes, Retained: []string{"data"}, Kept: []string{"changes"}}
	k, err := StartEmbeddedSecure("127.0.0.1:0", t.TempDir(), false, log, Security{})
	require.NoError(t, err)
	defer k.Close()
	require.True(t, k.Expires())
	value := make([]byte, 512<<10)
	for _, topic := range []string{"data", "changes"} {
		w := &kafka.Writer{Addr: kafka.TCP(k.Addrs()...), Topic: topic, RequiredAcks: kafka.RequireAll, BatchBytes: 1 << 20, BatchTimeout: time.Millisecond}
		for range 80 { // 40 MiB: three log files
			require.NoError(t, w.WriteMessages(context.Background(), kafka.Message{Value: value}))
		}
		require.NoError(t, w.Close())
	}
	k.cluster.ApplyRetention()
	info := k.cluster.PartitionInfo("data", 0)
	t.Logf("kept offsets %d to %d, %d bytes", info.LogStartOffset, info.HighWatermark, info.NumBytes)
	require.Greater(t, info.LogStartOffset, int64(40), "at most 16 MiB and the file being written are kept")
	require.LessOrEqual(t, info.NumBytes, int64(segmentBytes)+1<<20)
	require.EqualValues(t, 0, logStart(k, "changes"))
}

func TestCheckRetention(t *testing.T) {
	for d, ok := range map[time.Duration]bool{0: true, time.Minute: true, 24 * time.Hour: true, time.Second: false, -time.Hour: false} {
		require.Equal(t, ok, CheckRetention(d) == nil, d)
		cfg := DefaultConfig()
		cfg.EmbeddedRetention = d
		require.Equal(t, ok, cfg.Validate() == nil, d)
	}
	for b, ok := range map[config.ByteSize]bool{config.NoLimit: true, segmentBytes: true, 1 << 30: true, 0: false, 1 << 20: false} {
		require.Equal(t, ok, CheckRetentionBytes(b) == nil, b)
		cfg := DefaultConfig()
		cfg.EmbeddedRetentionBytes = b
		require.Equal(t, ok, cfg.Validate() == nil, b)
	}
}
