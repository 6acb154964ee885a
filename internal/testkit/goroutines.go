package testkit

import (
	"bytes"
	"cmp"
	"fmt"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
)

// Goroutines counts this process's goroutines by stack (function and line of
// each frame), for telling which ones a test left behind.
func Goroutines() map[string]int {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	out := map[string]int{}
	for _, rec := range strings.Split(b.String(), "\n\n") {
		lines := strings.Split(strings.TrimSpace(rec), "\n")
		n, _, ok := strings.Cut(lines[0], " @ ")
		count, err := strconv.Atoi(n)
		if !ok || err != nil {
			continue
		}
		var stack []string
		for _, l := range lines[1:] {
			// "#\t0x4a1b2c\tpkg.fn+0x1f\t\t/path/file.go:42"
			f := strings.Fields(strings.TrimPrefix(l, "#"))
			if len(f) >= 3 {
				fn, _, _ := strings.Cut(f[1], "+0x")
				stack = append(stack, fn+" "+f[2])
			}
		}
		out[strings.Join(stack, "\n")] += count
	}
	return out
}

// GrownGoroutines describes the stacks with more goroutines in after than in
// before, most grown first, at most limit of them.
func GrownGoroutines(before, after map[string]int, limit int) string {
	type grown struct {
		stack string
		n     int
	}
	var gs []grown
	for s, n := range after {
		if d := n - before[s]; d > 0 {
			gs = append(gs, grown{s, d})
		}
	}
	slices.SortFunc(gs, func(a, b grown) int { return cmp.Compare(b.n, a.n) })
	var b strings.Builder
	for i, g := range gs {
		if i == limit {
			fmt.Fprintf(&b, "… and %d more stacks\n", len(gs)-limit)
			break
		}
		fmt.Fprintf(&b, "+%d\n%s\n\n", g.n, g.stack)
	}
	return b.String()
}
