package config

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// sample is a config type in the package's convention: defaults in
// UnmarshalYAML, for itself and for each entry of its list.
type sample struct {
	Name  string        `yaml:"name"`
	Every time.Duration `yaml:"every"`
	Items []item        `yaml:"items"`
}

type item struct {
	Size int  `yaml:"size"`
	On   bool `yaml:"on"`
}

func (s *sample) UnmarshalYAML(unmarshal func(any) error) error {
	*s = sample{Every: time.Second}
	type plain sample
	return unmarshal((*plain)(s))
}

func (i *item) UnmarshalYAML(unmarshal func(any) error) error {
	*i = item{Size: 8, On: true}
	type plain item
	return unmarshal((*plain)(i))
}

var errEvery = errors.New("every must be positive")

func (s *sample) Complete() error {
	if s.Every <= 0 {
		return errEvery
	}
	return nil
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       sample
		err        string // the whole message, file and line included
	}{
		{name: "empty file: the defaults", yaml: "# nothing\n", want: sample{Every: time.Second}},
		{name: "list entries get their defaults", yaml: "items: [{size: 2}, {}]",
			want: sample{Every: time.Second, Items: []item{{2, true}, {8, true}}}},
		{name: "what the user wrote stays", yaml: "every: 1m\nitems:\n  - on: false\n    size: 0\n",
			want: sample{Every: time.Minute, Items: []item{{0, false}}}},
		{name: "unknown key", yaml: "name: a\nnmae: b\n", err: "f.yaml:2: field nmae not found in type config.plain"},
		{name: "unknown key in a list entry", yaml: "items:\n  - size: 1\n  - sise: 2\n", err: "f.yaml:3: field sise not found in type config.plain"},
		{name: "wrong type", yaml: "name: a\nitems:\n  - size: big\n", err: "f.yaml:3: cannot unmarshal !!str `big` into int"},
		{name: "bad duration", yaml: "every: soon\n", err: "f.yaml:1: cannot unmarshal !!str `soon` into time.Duration"},
		{name: "syntax", yaml: "name: a\nitems: [1,\n", err: "f.yaml:2: did not find expected node content"},
		{name: "two documents", yaml: "name: a\n---\nname: b\n", err: "f.yaml:2: a second YAML document; a config file holds one"},
		{name: "not a mapping", yaml: "just words", err: "f.yaml:1: cannot unmarshal !!str `just words` into config.plain"},
		{name: "invalid value", yaml: "every: 0s\n", err: "f.yaml: every must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse[sample]("f.yaml", []byte(tc.yaml))
			if tc.err == "" {
				require.NoError(t, err)
				require.Equal(t, tc.want, got)
				return
			}
			require.EqualError(t, err, tc.err)
			require.Equal(t, tc.name != "invalid value", errors.Is(err, ErrSyntax), "a YAML error is ErrSyntax, a bad value is not")
		})
	}
}

func TestLoad(t *testing.T) {
	_, err := Load[sample](filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "read config")
}

// FuzzParse decodes arbitrary YAML: an error naming the file, or a
// complete config that reads back the same once written out.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "items: [{size: 2}, {}]", "every: 1m\nitems:\n  - on: false\n", "a: [", "x: 1\n---\ny: 2"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse[sample]("fuzz.yaml", data)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.File != "fuzz.yaml" || !errors.As(err, &e) && !errors.Is(err, errEvery) {
				t.Fatalf("an error that does not name the file: %v", err)
			}
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse[sample]("again.yaml", out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		back, err := yaml.Marshal(again)
		require.NoError(t, err)
		require.Equal(t, string(out), string(back))
	})
}
