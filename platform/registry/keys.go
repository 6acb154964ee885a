package registry

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MinClusterKeyBytes is the shortest cluster key accepted.
const MinClusterKeyBytes = 32

// ErrClusterKey is wrapped by every cluster key error.
var ErrClusterKey = errors.New("cluster key")

// Keys are the keys a node derives with HKDF-SHA256 from the one cluster
// key that every node of a cluster shares (one file, so there is one secret
// to distribute and rotate): a MAC key that authenticates the registry
// change log, and two AES-256-GCM keys that seal device secrets, one for
// the change log's records and one for the registry database. Deriving
// separate keys keeps a MAC from ever being computed with an encryption key
// and a record's sealed secret from being pasted into a database, or back.
type Keys struct {
	mac  []byte
	wire cipher.AEAD
	rest cipher.AEAD
}

// HKDF info strings of the derived keys; changing one changes the key.
const (
	infoMAC  = "gale registry change-log mac v1"
	infoWire = "gale registry change-log secrets v1"
	infoRest = "gale registry at-rest secrets v1"
)

// NewKeys derives the node's keys from the cluster key.
func NewKeys(clusterKey []byte) (*Keys, error) {
	if len(clusterKey) < MinClusterKeyBytes {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrClusterKey, len(clusterKey), MinClusterKeyBytes)
	}
	derive := func(info string) ([]byte, error) {
		return hkdf.Key(sha256.New, clusterKey, nil, info, 32)
	}
	mac, err := derive(infoMAC)
	if err != nil {
		return nil, fmt.Errorf("%w: derive mac key: %w", ErrClusterKey, err)
	}
	k := &Keys{mac: mac}
	for _, a := range []struct {
		info string
		dst  *cipher.AEAD
	}{{infoWire, &k.wire}, {infoRest, &k.rest}} {
		key, err := derive(a.info)
		if err != nil {
			return nil, fmt.Errorf("%w: derive %s: %w", ErrClusterKey, a.info, err)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrClusterKey, err)
		}
		if *a.dst, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrClusterKey, err)
		}
	}
	return k, nil
}

// LoadKeyFile reads the cluster key from path (its bytes, surrounding
// whitespace trimmed: the generated file holds 64 hex digits) and derives the keys.
func LoadKeyFile(path string) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClusterKey, err)
	}
	k, err := NewKeys([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// EnsureKeyFile creates a cluster key file at path (32 random bytes as hex,
// mode 0600, its directory 0700) unless one exists, and reports whether it made one.
func EnsureKeyFile(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("%w: %w", ErrClusterKey, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("%w: %w", ErrClusterKey, err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("%w: create %s: %w", ErrClusterKey, path, err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return false, fmt.Errorf("%w: write %s: %w", ErrClusterKey, path, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("%w: write %s: %w", ErrClusterKey, path, err)
	}
	return true, nil
}

// sum returns the change-log MAC of data.
func (k *Keys) sum(data ...[]byte) []byte {
	m := hmac.New(sha256.New, k.mac)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// sealAEAD encrypts plaintext with aead, bound to ad: nonce || ciphertext.
func sealAEAD(aead cipher.AEAD, plaintext, ad string) []byte {
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, []byte(plaintext), []byte(ad))
}

// ErrSealed is returned for a sealed secret that does not open.
var ErrSealed = errors.New("sealed secret does not open (another cluster key?)")

// openAEAD decrypts what sealAEAD made with the same ad.
func openAEAD(aead cipher.AEAD, sealed []byte, ad string) (string, error) {
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return "", ErrSealed
	}
	n := aead.NonceSize()
	plain, err := aead.Open(nil, sealed[:n], sealed[n:], []byte(ad))
	if err != nil {
		return "", ErrSealed
	}
	return string(plain), nil
}

// restPrefix marks a device secret sealed in the database; a value without
// it is a plaintext secret of an older database, sealed when it is opened.
const restPrefix = "gcm1:"

// sealRest seals a device secret for the database.
func (k *Keys) sealRest(secret, ad string) string {
	return restPrefix + base64.RawStdEncoding.EncodeToString(sealAEAD(k.rest, secret, ad))
}

// openRest opens what sealRest made; plaintext reports an unsealed value.
func (k *Keys) openRest(stored, ad string) (secret string, plaintext bool, err error) {
	b64, ok := strings.CutPrefix(stored, restPrefix)
	if !ok {
		return stored, true, nil
	}
	if k == nil {
		return "", false, fmt.Errorf("%w: the registry is opened without a cluster key", ErrSealed)
	}
	b, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil {
		return "", false, ErrSealed
	}
	s, err := openAEAD(k.rest, b, ad)
	return s, false, err
}
