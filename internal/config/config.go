// Package config reads Gale's YAML configuration files one way. A config
// type keeps its defaults in one place: a struct type starts from them in
// its UnmarshalYAML (Prometheus's way: *c = DefaultConfig(), then decode
// into a plain alias), so every entry of a list gets them too, while a
// type whose zero values stand for its defaults fills them in its Default
// method. Either way a default applies only where the file says nothing.
// Complete then derives what follows from other fields and validates.
// Decoding is strict: a key the type does not have, a value of the wrong
// type or a second document is an error naming the file and line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrSyntax is wrapped by every error about a file's YAML (as opposed to
// the values it holds, which Complete checks).
var ErrSyntax = errors.New("config not understood")

// Error is a YAML error in a config file: where, and what.
type Error struct {
	File string
	Line int // 0: unknown
	Msg  string
	// err is the error of a type's own UnmarshalYAML, kept for errors.Is.
	err error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Unwrap makes every Error an ErrSyntax, and the error of a type's own UnmarshalYAML.
func (e *Error) Unwrap() []error {
	if e.err != nil {
		return []error{ErrSyntax, e.err}
	}
	return []error{ErrSyntax}
}

// Completer is a pointer to a config type T: Complete fills what follows
// from the fields read (paths under a data dir, say) and validates them.
type Completer[T any] interface {
	*T
	Complete() error
}

// Load reads the config file at path; see Parse.
func Load[T any, P Completer[T]](path string) (T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("read config: %w", err)
	}
	return Parse[T, P](path, data)
}

// Parse decodes data, the contents of the file called name, strictly into
// a new T (starting from T's defaults, see the package doc) and completes
// it. Errors name the file, and the line where the YAML is at fault.
func Parse[T any, P Completer[T]](name string, data []byte) (T, error) {
	var c T
	if err := Decode(name, data, &c); err != nil {
		return c, err
	}
	if err := P(&c).Complete(); err != nil {
		return c, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// Decode decodes the one YAML document of data, the contents of the file
// called name, into v strictly: a key v's type does not have, a value of
// the wrong type and a second document are *Error values with their line.
// An empty document is an empty mapping, so v's UnmarshalYAML still runs.
func Decode(name string, data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return Decode(name, []byte("{}"), v)
	}
	if err != nil {
		return located(name, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return located(name, err)
	default:
		return &Error{File: name, Line: next.Line, Msg: "a second YAML document; a config file holds one"}
	}
}

// yamlLine is how yaml.v3 starts a message that knows its line.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// located turns a yaml.v3 error into *Error values, one per problem.
func located(name string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		e := locate(name, err.Error())
		e.err = err
		return e
	}
	errs := make([]error, len(te.Errors))
	for i, msg := range te.Errors {
		errs[i] = locate(name, msg)
	}
	return errors.Join(errs...)
}

func locate(name, msg string) *Error {
	e := &Error{File: name, Msg: strings.TrimPrefix(msg, "yaml: ")}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = msg[len(m[0]):]
	}
	return e
}

// ItemLines returns the line of each entry of the list under key in the
// top-level mapping of the document root (nil when there is none), for
// errors about the n-th entry that yaml.v3's decoding does not locate.
func ItemLines(root *yaml.Node, key string) []int {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			var out []int
			for _, item := range m.Content[i+1].Content {
				out = append(out, item.Line)
			}
			return out
		}
	}
	return nil
}
