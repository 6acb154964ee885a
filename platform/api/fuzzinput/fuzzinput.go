// Package fuzzinput helps fuzz targets: it seeds a corpus from the
// repository's own files, checks that a parsed value survives being written
// back as YAML, and reads fuzzed bytes as Modbus register words and bits.
// Only tests import it.
package fuzzinput

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// Seed adds the content of every file matching the patterns (relative to
// the package directory, as go test runs) to f's corpus; it fails f when
// no file matches, so a moved testdata folder cannot leave a target unseeded.
func Seed(f *testing.F, patterns ...string) {
	f.Helper()
	n := 0
	for _, p := range patterns {
		files, err := filepath.Glob(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no seed files match %v", patterns)
	}
}

// Validated fuzzes parse, a strict decoder of a config file format, from
// f's corpus: an input it accepts must validate again and parse again once
// written back as YAML; more, when not nil, checks an accepted value further.
func Validated[T interface{ Validate() error }](f *testing.F, parse func([]byte) (T, error), more func(*testing.T, T)) {
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parse(data)
		if err != nil {
			return
		}
		if err := v.Validate(); err != nil {
			t.Fatalf("a parsed value does not validate: %v", err)
		}
		if more != nil {
			more(t, v)
		}
		Reparse(t, v, func(b []byte) error { _, err := parse(b); return err })
	})
}

// Reparse fails t unless v, a value parse accepted, written back as YAML
// is accepted by parse again: what a file says, the file format can say.
func Reparse(t *testing.T, v any, parse func([]byte) error) {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if err := parse(out); err != nil {
		t.Fatalf("a valid value written back does not parse: %v\n%s", err, out)
	}
}

// Words reads b as big-endian 16-bit words, as they travel in a Modbus
// frame; an odd last byte is dropped.
func Words(b []byte) []uint16 {
	w := make([]uint16, len(b)/2)
	for i := range w {
		w[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return w
}

// Bits reads each byte of b as a bit (its lowest).
func Bits(b []byte) []bool {
	out := make([]bool, len(b))
	for i, c := range b {
		out[i] = c&1 == 1
	}
	return out
}
