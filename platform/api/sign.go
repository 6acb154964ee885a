package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Credentials are the MQTT connect fields of a signed device login.
type Credentials struct {
	ClientID string
	Username string
	Password string
}

// Login is what a connect's client ID and username declare.
type Login struct {
	ID         string
	ProductKey string
	DeviceKey  string
	// Timestamp is the signing time in Unix milliseconds.
	Timestamp int64
}

// ErrBadLogin is returned for client IDs and usernames that do not follow the protocol.
var ErrBadLogin = errors.New("malformed device login")

// Sign builds the connect credentials of device (pk, dk) with secret, signed at ts (Unix ms).
// id is the client identifier part (often the device key).
func Sign(id, productKey, deviceKey, secret string, ts int64) Credentials {
	t := strconv.FormatInt(ts, 10)
	return Credentials{
		ClientID: id + "|securemode=2,signmethod=sha256,timestamp=" + t + "|",
		Username: deviceKey + "&" + productKey,
		Password: signature(id, productKey, deviceKey, secret, t),
	}
}

func signature(id, productKey, deviceKey, secret, ts string) string {
	sum := sha256.Sum256([]byte("clientId" + id + "deviceKey" + deviceKey + "productKey" + productKey + "timestamp" + ts + secret))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// ParseLogin reads the login a client ID and username declare, without checking the signature.
func ParseLogin(clientID, username string) (Login, error) {
	var l Login
	id, opts, ok := strings.Cut(clientID, "|")
	if !ok || id == "" || !strings.HasSuffix(opts, "|") {
		return l, fmt.Errorf("%w: client id %q is not {id}|securemode=2,signmethod=sha256,timestamp={ms}|", ErrBadLogin, clientID)
	}
	l.ID = id
	var method string
	for _, kv := range strings.Split(strings.TrimSuffix(opts, "|"), ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "signmethod":
			method = v
		case "timestamp":
			ts, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return l, fmt.Errorf("%w: timestamp %q", ErrBadLogin, v)
			}
			l.Timestamp = ts
		}
	}
	if method != "sha256" {
		return l, fmt.Errorf("%w: signmethod %q, want sha256", ErrBadLogin, method)
	}
	if l.Timestamp == 0 {
		return l, fmt.Errorf("%w: no timestamp in client id", ErrBadLogin)
	}
	dk, pk, ok := strings.Cut(username, "&")
	if !ok || dk == "" || pk == "" {
		return l, fmt.Errorf("%w: username %q is not {deviceKey}&{productKey}", ErrBadLogin, username)
	}
	l.DeviceKey, l.ProductKey = dk, pk
	return l, nil
}

// Verify reports whether password is the signature of login with secret.
func (l Login) Verify(password, secret string) bool {
	want := signature(l.ID, l.ProductKey, l.DeviceKey, secret, strconv.FormatInt(l.Timestamp, 10))
	return len(password) == len(want) && subtleEqual(password, want)
}

func subtleEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
