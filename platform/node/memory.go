package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/gale-iot/gale/internal/config"
)

// MemoryConfig is the node's memory budget, which the Go runtime holds the
// process to: its soft memory limit (GOMEMLIMIT) is the budget, and the GC
// lets garbage grow over the live heap by GCPercent of it (GOGC) but by no
// more than GCHeadroom, and never past the limit. A high GCPercent keeps
// ingest fast while the live heap is small (garbage collection was a
// quarter of the CPU at GOGC 100, docs/benchmarks.md); the headroom keeps
// RSS near the live heap when many series or sessions make it large, where
// GOGC 400 alone let the heap grow to five times what is live. GOMEMLIMIT
// and GOGC in the environment override the limit and the GC target.
type MemoryConfig struct {
	// Limit is the budget in bytes, or with a unit: "2GiB", "512MiB", "1.5GB".
	// Empty: 90 % of the cgroup's memory limit when the process has one,
	// else half the machine's memory. "none": no limit.
	Limit config.ByteSize `yaml:"limit"`
	// GCPercent is the most garbage, in percent of the live heap, the GC
	// lets accumulate before it collects (GOGC; default 400).
	GCPercent int `yaml:"gcPercent"`
	// GCHeadroom caps that garbage in bytes (default 1GiB) while the TSDB
	// holds few series; it shrinks as they grow, to half at
	// headroomHalfSeries active series (see SeriesHeadroom). With a live heap
	// over that headroom / GCPercent, GOGC follows it down (to 100 at
	// least), so the heap peaks at about live + max(headroom, live).
	// "none": no cap.
	GCHeadroom config.ByteSize `yaml:"gcHeadroom"`
}

// Defaults of MemoryConfig.
const (
	// DefaultGCPercent: the hot path allocates per message, and a higher
	// target trades memory for ingest throughput.
	DefaultGCPercent = 400
	// DefaultGCHeadroom: 1 GiB of garbage keeps GOGC at 400 up to a live
	// heap of 256 MiB, which ingest at 10,000-20,000 msgs/s needs (256 MiB
	// cost half of PUBACK p99 and a fifth of the throughput at 20,000,
	// docs/benchmarks.md); a node short of memory sets it lower.
	DefaultGCHeadroom config.ByteSize = 1 << 30
	// minTunedPercent is the lowest GOGC the headroom sets, Go's default:
	// a live heap made large by something else than series (a Kafka backlog
	// held in the embedded broker: 1.7 GB) at GOGC 25 had the GC marking it
	// several times a second and ingest stalled, which kept the backlog
	// (docs/benchmarks.md). Below 100 the limit alone holds the heap.
	minTunedPercent = 100
	// headroomHalfSeries is the number of active series at which the GC
	// headroom is half of GCHeadroom. Garbage is a cost per node, memory
	// per series the figure a fleet is sized by: a node ingesting fast
	// for a thousand devices (10,000 series) keeps 91 % of the headroom,
	// so GOGC 400 up to a live heap of 233 MiB at the default; at 200,000
	// series it is a third, under the live heap, and GOGC is 100
	// (docs/benchmarks.md, "Memory, disk and CPU per unit").
	headroomHalfSeries = 100_000
)

// Validate checks c.
func (c MemoryConfig) Validate() error {
	if c.GCPercent < 0 {
		return fmt.Errorf("%w: memory.gcPercent must not be negative", ErrConfig)
	}
	if c.GCHeadroom > 0 && c.GCHeadroom < 16<<20 {
		return fmt.Errorf("%w: memory.gcHeadroom %s is below 16MiB", ErrConfig, c.GCHeadroom)
	}
	if c.Limit > 0 && c.Limit < 64<<20 {
		return fmt.Errorf("%w: memory.limit %s is below 64MiB: a node cannot run in it", ErrConfig, c.Limit)
	}
	return nil
}

// MemoryPolicy is what ApplyMemory set, and why.
type MemoryPolicy struct {
	Limit     config.ByteSize // -1: none
	GCPercent int
	// GCHeadroom caps the garbage over the live heap (-1: none, and when
	// GOGC comes from the environment).
	GCHeadroom config.ByteSize
	// LimitFrom and GCFrom say where the values came from: config,
	// environment, cgroup, machine or default.
	LimitFrom, GCFrom string
}

// ApplyMemory sets the process's soft memory limit and GC target from c,
// unless GOMEMLIMIT or GOGC are in the environment (they win). It is
// process-wide: the last node started in a process sets it.
func ApplyMemory(c MemoryConfig, log *slog.Logger) MemoryPolicy {
	p := resolveMemory(c, os.Getenv, cgroupMemoryLimit(), machineMemory())
	if p.LimitFrom != "environment" {
		limit := int64(math.MaxInt64)
		if p.Limit > 0 {
			limit = int64(p.Limit)
		}
		debug.SetMemoryLimit(limit)
	}
	if p.GCFrom != "environment" {
		debug.SetGCPercent(p.GCPercent)
	}
	log.Info("memory budget", "limit", p.Limit.String(), "limit_from", p.LimitFrom, "gc_percent", p.GCPercent,
		"gc_headroom", p.GCHeadroom.String(), "gc_from", p.GCFrom)
	return p
}

// TuneGC holds the GC's garbage to the headroom: every interval it sets
// GOGC to the percentage of the live heap that SeriesHeadroom(series()) is,
// between minTunedPercent and p.GCPercent, until ctx ends. It returns at
// once when there is no headroom to hold (none, or GOGC from the
// environment).
func (p MemoryPolicy) TuneGC(ctx context.Context, interval time.Duration, series func() uint64) error {
	if p.GCHeadroom <= 0 || p.GCFrom == "environment" {
		return nil
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := p.GCPercent
	for {
		metrics.Read(live)
		if pct := tunedPercent(live[0].Value.Uint64(), p.SeriesHeadroom(series()), p.GCPercent); pct != current {
			debug.SetGCPercent(pct)
			current = pct
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// SeriesHeadroom is the garbage the GC may let grow while the TSDB holds
// series active series: GCHeadroom · h / (h + series), h being
// headroomHalfSeries.
func (p MemoryPolicy) SeriesHeadroom(series uint64) config.ByteSize {
	return config.ByteSize(float64(p.GCHeadroom) * headroomHalfSeries / (headroomHalfSeries + float64(series)))
}

// activeSeries is the number of series in the TSDB's head, 0 on a node
// without one.
func (n *Node) activeSeries() uint64 {
	if n.db == nil {
		return 0
	}
	return n.db.Head().NumSeries()
}

// tunedPercent is the GOGC that lets headroom bytes of garbage grow over a
// live heap of live bytes, between minTunedPercent and max.
func tunedPercent(live uint64, headroom config.ByteSize, maxPercent int) int {
	if live == 0 {
		return maxPercent
	}
	return max(min(maxPercent, int(uint64(headroom)*100/live)), min(minTunedPercent, maxPercent))
}

// resolveMemory decides the budget: the environment, then the config, then
// 90 % of the cgroup's limit, then half the machine's memory (0: unknown).
func resolveMemory(c MemoryConfig, getenv func(string) string, cgroup, machine int64) MemoryPolicy {
	var p MemoryPolicy
	switch {
	case getenv("GOMEMLIMIT") != "":
		p.Limit, p.LimitFrom = config.ByteSize(debug.SetMemoryLimit(-1)), "environment"
		if p.Limit == math.MaxInt64 {
			p.Limit = config.NoLimit
		}
	case c.Limit != 0:
		p.Limit, p.LimitFrom = c.Limit, "config"
	case cgroup > 0:
		p.Limit, p.LimitFrom = config.ByteSize(cgroup/10*9), "cgroup"
	case machine > 0:
		p.Limit, p.LimitFrom = config.ByteSize(machine/2), "machine"
	default:
		p.Limit, p.LimitFrom = config.NoLimit, "default"
	}
	switch {
	case getenv("GOGC") != "":
		p.GCPercent, p.GCFrom = debug.SetGCPercent(-1), "environment"
		debug.SetGCPercent(p.GCPercent)
	case c.GCPercent != 0:
		p.GCPercent, p.GCFrom = c.GCPercent, "config"
	default:
		p.GCPercent, p.GCFrom = DefaultGCPercent, "default"
	}
	switch {
	case p.GCFrom == "environment":
		p.GCHeadroom = config.NoLimit
	case c.GCHeadroom != 0:
		p.GCHeadroom = c.GCHeadroom
	default:
		p.GCHeadroom = DefaultGCHeadroom
	}
	return p
}

// cgroupMemoryLimit returns the memory limit of the process's cgroup (v2,
// else v1), or 0 when it has none or it cannot be read.
func cgroupMemoryLimit() int64 {
	var files []string
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if path, ok := strings.CutPrefix(line, "0::"); ok { // v2
				files = append(files, filepath.Join("/sys/fs/cgroup", path, "memory.max"))
			} else if _, path, ok := strings.Cut(line, ":memory:"); ok { // v1
				files = append(files, filepath.Join("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes"))
			}
		}
	}
	files = append(files, "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		if err != nil || v <= 0 || v >= 1<<60 { // "max", or v1's "unlimited" (a page-rounded MaxInt64)
			continue
		}
		return v
	}
	return 0
}

// machineMemory returns MemTotal from /proc/meminfo, or 0.
func machineMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
