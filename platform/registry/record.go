package registry

import (
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gale-iot/gale/platform/api"
)

// ChangeRecordVersion leads every change-log record:
//
//	version (1 byte) | HMAC-SHA256 (32 bytes) | the change as JSON
//
// The MAC, with the key derived from the cluster key, covers the version,
// the Kafka message key and the JSON, so neither can be forged nor a
// record moved under another key. A device's secret and a user's
// password hash travel sealed; a token travels as its hash only.
const ChangeRecordVersion = 1

const macSize = 32

// MaxChangeRecordBytes is the largest change-log record a node decodes.
const MaxChangeRecordBytes = 4 << 20

// Reasons a change-log record is refused (the reason label of
// gale_registry_changes_rejected_total), each with its error.
var (
	ErrChangeMalformed = errors.New("malformed registry change record")
	ErrChangeVersion   = fmt.Errorf("%w: unknown version", ErrChangeMalformed)
	ErrChangeMAC       = errors.New("registry change record without a valid MAC (not made with this cluster's key)")
)

// ChangeKey is the Kafka message key of c: the compaction key of its entity.
func ChangeKey(c api.RegistryChange) []byte { return []byte(c.Kind + "/" + c.Key) }

// SealChange encodes c as a change-log record: the device secret sealed,
// the whole authenticated with the cluster key.
func (k *Keys) SealChange(c api.RegistryChange) ([]byte, error) {
	if c.Device != nil {
		d := *c.Device
		if d.Secret != "" {
			c.SealedSecret = sealAEAD(k.wire, d.Secret, c.Key)
		}
		d.Secret = ""
		c.Device = &d
	}
	if c.User != nil {
		u := *c.User
		if u.PasswordHash != "" {
			c.SealedSecret = sealAEAD(k.wire, u.PasswordHash, userAD(c.Key))
		}
		u.PasswordHash = ""
		c.User = &u
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode registry change %s %s: %w", c.Kind, c.Key, err)
	}
	out := make([]byte, 1+macSize, 1+macSize+len(body))
	out[0] = ChangeRecordVersion
	copy(out[1:], k.sum(out[:1], ChangeKey(c), body))
	return append(out, body...), nil
}

// OpenChange decodes a change-log record read under message key: it checks
// the MAC before anything else, then decodes strictly and checks the change
// is well formed, and opens the device secret. Every error wraps one of
// ErrChangeMalformed, ErrChangeVersion, ErrChangeMAC, ErrSealed or ErrInvalid.
func (k *Keys) OpenChange(key, record []byte) (api.RegistryChange, error) {
	var c api.RegistryChange
	switch {
	case len(record) < 1+macSize:
		return c, fmt.Errorf("%w: %d bytes", ErrChangeMalformed, len(record))
	case len(record) > MaxChangeRecordBytes:
		return c, fmt.Errorf("%w: %d bytes, more than %d", ErrChangeMalformed, len(record), MaxChangeRecordBytes)
	case record[0] != ChangeRecordVersion:
		return c, fmt.Errorf("%w: %d", ErrChangeVersion, record[0])
	}
	body := record[1+macSize:]
	if !hmac.Equal(record[1:1+macSize], k.sum(record[:1], key, body)) {
		return c, ErrChangeMAC
	}
	if err := api.DecodeJSON(body, &c); err != nil {
		return c, fmt.Errorf("%w: %v", ErrChangeMalformed, err)
	}
	if !bytes.Equal(key, ChangeKey(c)) {
		return c, fmt.Errorf("%w: message key %q for change %s/%s", ErrInvalid, key, c.Kind, c.Key)
	}
	if err := checkChange(&c); err != nil {
		return c, err
	}
	if c.Device != nil && c.SealedSecret != nil {
		secret, err := openAEAD(k.wire, c.SealedSecret, c.Key)
		if err != nil {
			return c, fmt.Errorf("device %s: %w", c.Key, err)
		}
		d := *c.Device
		d.Secret, c.SealedSecret = secret, nil
		c.Device = &d
	}
	if c.User != nil && c.SealedSecret != nil {
		hash, err := openAEAD(k.wire, c.SealedSecret, userAD(c.Key))
		if err != nil {
			return c, fmt.Errorf("user %s: %w", c.Key, err)
		}
		u := *c.User
		u.PasswordHash, c.SealedSecret = hash, nil
		c.User = &u
	}
	return c, nil
}

// userAD is the additional data sealing a user's password hash: it ties the
// hash to the user and keeps it from being opened as a device's secret.
func userAD(name string) string { return "user:" + name }

// checkChange checks that c names one entity consistently.
func checkChange(c *api.RegistryChange) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s change %q: %s", ErrInvalid, c.Kind, c.Key, fmt.Sprintf(format, args...))
	}
	if c.Key == "" {
		return bad("no key")
	}
	if (c.Device != nil && c.Kind != api.ChangeDevice) || (c.User != nil && c.Kind != api.ChangeUser) || (c.Token != nil && c.Kind != api.ChangeToken) {
		return bad("fields of another kind of change")
	}
	if c.SealedSecret != nil && c.Kind != api.ChangeDevice && c.Kind != api.ChangeUser {
		return bad("a sealed secret on a change that is not a device's or a user's")
	}
	switch c.Kind {
	case api.ChangeProduct:
		if !c.Deleted && (c.Product == nil || c.Product.Key != c.Key) {
			return bad("no product of that key")
		}
	case api.ChangeDevice:
		pk, dk, ok := strings.Cut(c.Key, "/")
		if !ok || !identRE.MatchString(pk) || !identRE.MatchString(dk) {
			return bad("key is not productKey/deviceKey")
		}
		if c.Deleted {
			break
		}
		switch {
		case c.Device == nil || c.Device.ProductKey != pk || c.Device.DeviceKey != dk:
			return bad("no device of that key")
		case c.Device.Secret != "":
			return bad("plaintext secret")
		case c.SealedSecret == nil:
			return bad("no sealed secret")
		}
	case api.ChangeAsset:
		if c.Asset == nil || c.Asset.ID != c.Key {
			return bad("no asset of that id")
		}
	case api.ChangeToken:
		if b, err := hex.DecodeString(c.Key); err != nil || len(b) != 32 {
			return bad("key is not a token hash")
		}
		if t := c.Token; t != nil && !c.Deleted {
			switch {
			case t.ID == "" || len(t.ID) > MaxNameBytes:
				return bad("token without a valid id")
			case api.RoleRank(t.Role) == 0:
				return bad("token role %q", t.Role)
			case t.Kind != api.TokenAPI && t.Kind != api.TokenSession:
				return bad("token kind %q", t.Kind)
			}
		}
	case api.ChangeUser:
		if c.Deleted {
			break
		}
		switch {
		case c.User == nil || c.User.Name != c.Key:
			return bad("no user of that name")
		case api.RoleRank(c.User.Role) == 0:
			return bad("user role %q", c.User.Role)
		case c.User.PasswordHash != "":
			return bad("plaintext password hash")
		case c.SealedSecret == nil:
			return bad("no sealed password hash")
		}
	default:
		return bad("unknown kind")
	}
	return nil
}
