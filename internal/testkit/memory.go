package testkit

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
)

// RSS is this process's resident set size in bytes, from /proc/self/status;
// an error where there is no such file or no VmRSS line in it.
func RSS() (uint64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}

// LiveHeap is the heap the last GC marked live, in bytes.
func LiveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// WriteHeapProfile writes the heap profile to path (for go tool pprof);
// nothing when path is empty.
func WriteHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Memory is the process's memory at a point of a benchmark: its RSS and the
// heap the last GC marked live, in bytes.
type Memory struct{ RSS, LiveHeap uint64 }

// MemoryBaseline collects garbage, returns the freed memory to the OS and
// measures the process: what a memory benchmark counts its growth from. It
// skips b where the RSS cannot be read.
func MemoryBaseline(b *testing.B) Memory {
	runtime.GC()
	debug.FreeOSMemory()
	return Memory{RSS: rssOf(b), LiveHeap: LiveHeap()}
}

// ReportMemoryGrowth reports the growth since base per n units (such as
// series): rss-B/unit as the GC left the process, then rss-after-gc-B/unit
// and live-heap-B/unit after a forced collection. It writes the heap profile
// to profile (none when empty) and returns the figures in MiB for a log line.
func ReportMemoryGrowth(b *testing.B, base Memory, n int, unit, profile string) string {
	rssHeld := rssOf(b) // as the GC left it, no forced collection
	runtime.GC()
	after := Memory{RSS: rssOf(b), LiveHeap: LiveHeap()}
	if err := WriteHeapProfile(profile); err != nil {
		b.Fatal(err)
	}
	per := func(v, from uint64) float64 { return (float64(v) - float64(from)) / float64(n) }
	b.ReportMetric(per(rssHeld, base.RSS), "rss-B/"+unit)
	b.ReportMetric(per(after.RSS, base.RSS), "rss-after-gc-B/"+unit)
	b.ReportMetric(per(after.LiveHeap, base.LiveHeap), "live-heap-B/"+unit)
	return fmt.Sprintf("RSS %d → %d MiB (%d MiB after a GC), live heap %d → %d MiB",
		base.RSS>>20, rssHeld>>20, after.RSS>>20, base.LiveHeap>>20, after.LiveHeap>>20)
}

// rssOf is the process's RSS; b is skipped where it cannot be read.
func rssOf(b *testing.B) uint64 {
	v, err := RSS()
	if err != nil {
		b.Skipf("no RSS: %v", err)
	}
	return v
}
