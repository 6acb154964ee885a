package bus

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka API keys the shim below deals with.
const (
	keySASLHandshake = 17
	keyApiVersions   = 18
)

// advertiseHandshakeV0 makes the embedded broker list SaslHandshake from
// version 0 in its ApiVersions answers. kfake serves SaslHandshake v1 only,
// which every client picks when it is offered, but librdkafka (kcat and the
// many clients built on it) will not log in unless the list includes v0.
// kfake offers no hook on its answers, so the broker's own list is read
// once, over the wire, and served with that one change from then on.
func advertiseHandshakeV0(c *kfake.Cluster, addr string, tlsOn bool) error {
	keys, err := apiVersions(addr, tlsOn)
	if err != nil {
		return fmt.Errorf("read the embedded kafka's api versions: %w", err)
	}
	maxVersion := int16(-1)
	for i := range keys {
		switch keys[i].ApiKey {
		case keySASLHandshake:
			keys[i].MinVersion = 0
		case keyApiVersions:
			maxVersion = keys[i].MaxVersion
		}
	}
	c.ControlKey(keyApiVersions, func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req, ok := kreq.(*kmsg.ApiVersionsRequest)
		if !ok || req.Version > maxVersion || req.Version >= 3 && (req.ClientSoftwareName == "" || req.ClientSoftwareVersion == "") {
			return nil, nil, false // kfake answers: a version to downgrade, or a request to refuse
		}
		resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
		resp.ApiKeys = slices.Clone(keys)
		return resp, nil, true
	})
	return nil
}

// apiVersions asks the broker at addr for its ApiVersions (v0: the list of
// keys and versions), before any login, as every client does first.
func apiVersions(addr string, tlsOn bool) ([]kmsg.ApiVersionsResponseApiKey, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if tlsOn {
		// The broker is this process's own listener, asked only for its
		// public version list: there is nothing to verify it against.
		conn = tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // see above
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return nil, err
	}
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 0
	if _, err := conn.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("gale")).AppendRequest(nil, req, 1)); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 1<<20 {
		return nil, fmt.Errorf("api versions answer of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, err
	}
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if err := resp.ReadFrom(body[4:]); err != nil { // after the correlation id
		return nil, err
	}
	if resp.ErrorCode != 0 || len(resp.ApiKeys) == 0 {
		return nil, fmt.Errorf("api versions answer: error code %d, %d keys", resp.ErrorCode, len(resp.ApiKeys))
	}
	return resp.ApiKeys, nil
}
