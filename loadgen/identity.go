package loadgen

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/gale-iot/gale/platform/api"
)

// Identity is one device's login.
type Identity struct {
	ProductKey string `json:"productKey"`
	DeviceKey  string `json:"deviceKey"`
	Secret     string `json:"secret,omitempty"`
}

// Name is "productKey/deviceKey".
func (id Identity) Name() string { return id.ProductKey + "/" + id.DeviceKey }

// ErrDevicesFile is wrapped by errors reading a devices file.
var ErrDevicesFile = errors.New("bad devices file")

// ReadIdentities reads a devices file: a JSON array of devices (as the API
// returns them: productKey, deviceKey, secret) or CSV lines
// productKey,deviceKey,secret with an optional header line.
func ReadIdentities(path string) ([]Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read devices file: %w", err)
	}
	return parseIdentities(b, path)
}

// parseIdentities parses the devices file read from path.
func parseIdentities(b []byte, path string) ([]Identity, error) {
	var ids []Identity
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		var devs []api.Device
		if err := json.Unmarshal(t, &devs); err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrDevicesFile, path, err)
		}
		for _, d := range devs {
			ids = append(ids, Identity{ProductKey: d.ProductKey, DeviceKey: d.DeviceKey, Secret: d.Secret})
		}
	} else {
		r := csv.NewReader(bytes.NewReader(b))
		r.FieldsPerRecord = 3
		r.TrimLeadingSpace = true
		r.Comment = '#'
		for line := 1; ; line++ {
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%w %s: %v", ErrDevicesFile, path, err)
			}
			if line == 1 && strings.EqualFold(rec[0], "productKey") {
				continue
			}
			ids = append(ids, Identity{ProductKey: rec[0], DeviceKey: rec[1], Secret: rec[2]})
		}
	}
	seen := map[string]bool{}
	for i, id := range ids {
		if id.ProductKey == "" || id.DeviceKey == "" || id.Secret == "" {
			return nil, fmt.Errorf("%w %s: device %d has an empty product key, device key or secret", ErrDevicesFile, path, i+1)
		}
		if !utf8.ValidString(id.ProductKey) || !utf8.ValidString(id.DeviceKey) || !utf8.ValidString(id.Secret) {
			return nil, fmt.Errorf("%w %s: device %d is not valid UTF-8", ErrDevicesFile, path, i+1)
		}
		if seen[id.Name()] {
			return nil, fmt.Errorf("%w %s: device %s listed twice", ErrDevicesFile, path, id.Name())
		}
		seen[id.Name()] = true
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w %s: no devices", ErrDevicesFile, path)
	}
	return ids, nil
}
