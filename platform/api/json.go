package api

import (
	"bytes"
	"encoding/json"
	"errors"
)

// DecodeJSON decodes data, which must hold exactly one JSON value, into v
// strictly: a field v does not have, or anything after the value, is an error.
func DecodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}
