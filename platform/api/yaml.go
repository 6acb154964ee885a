package api

import (
	"bytes"

	"gopkg.in/yaml.v3"
)

// DecodeYAML decodes one YAML document into v strictly: a field v does not
// have is an error. Empty input returns io.EOF, for callers to allow or not.
// Every Gale file format (configs, thing models, register maps, rules,
// scenarios) is read through it.
func DecodeYAML(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}
