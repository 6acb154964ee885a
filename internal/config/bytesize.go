package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// NoLimit is a ByteSize that sets no bound ("none").
const NoLimit ByteSize = -1

// ByteSize is a number of bytes, written as an integer or with a unit (B,
// KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseByteSize parses "2GiB", "512MiB", "1.5GB", "1048576" or "none" (NoLimit).
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	if s == "none" {
		return NoLimit, nil
	}
	num, mult := s, 1.0
	for _, u := range byteUnits {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("byte size %q: want a non-negative number with an optional unit (KiB, MiB, GiB, KB, MB, GB) or none", s)
	}
	return ByteSize(f * mult), nil
}

// UnmarshalYAML accepts an integer or a string ParseByteSize reads.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	return b.Set(s)
}

// String writes b in the largest binary unit that divides it, or "none".
func (b ByteSize) String() string {
	if b < 0 {
		return "none"
	}
	for i := 3; i >= 0; i-- { // TiB down to KiB
		if m := ByteSize(byteUnits[i].mult); b >= m && b%m == 0 {
			return strconv.FormatInt(int64(b/m), 10) + byteUnits[i].suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// Set reads a command-line flag's value as ParseByteSize does.
func (b *ByteSize) Set(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
