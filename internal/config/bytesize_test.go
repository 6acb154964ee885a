package config

import (
	"flag"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"1048576": 1 << 20, "512MiB": 512 << 20, "2GiB": 2 << 30, "1.5GiB": 3 << 29, "2GB": 2e9, "64 MiB": 64 << 20, "none": NoLimit, "0": 0,
	} {
		got, err := ParseByteSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "-1", "2XB", "GiB", "1e30GiB", "two"} {
		_, err := ParseByteSize(in)
		require.Error(t, err, in)
	}
	require.Equal(t, "2GiB", ByteSize(2<<30).String())
	require.Equal(t, "1536MiB", ByteSize(3<<29).String())
	require.Equal(t, "none", NoLimit.String())
}

func TestByteSizeFlag(t *testing.T) {
	var b ByteSize
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Var(&b, "size", "")
	require.NoError(t, fs.Parse([]string{"--size", "256MiB"}))
	require.Equal(t, ByteSize(256<<20), b)
	require.Error(t, fs.Parse([]string{"--size", "lots"}))
}
