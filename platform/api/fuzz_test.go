package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func FuzzParseLogin(f *testing.F) {
	good := Sign("WT01", "wind-turbine", "WT01", "s3cret", 1732550400000)
	f.Add(good.ClientID, good.Username, good.Password, "s3cret")
	f.Add("WT01|securemode=2,signmethod=sha256,timestamp=-1|", "dk&pk", "", "")
	f.Add("|securemode=2|", "&", "x", "y")
	f.Add("a|timestamp=99999999999999999999,signmethod=sha256|", "a&b&c", "00", "")
	f.Add("a|signmethod=sha256,timestamp=1,timestamp=2|", "dk&pk", strings.Repeat("A", 64), "s")
	f.Fuzz(func(t *testing.T, clientID, username, password, secret string) {
		l, err := ParseLogin(clientID, username)
		if err != nil {
			require.ErrorIs(t, err, ErrBadLogin)
			return
		}
		require.NotEmpty(t, l.ID)
		require.NotEmpty(t, l.ProductKey)
		require.NotEmpty(t, l.DeviceKey)
		require.NotZero(t, l.Timestamp)
		_ = l.Verify(password, secret) // must not panic for any input
		// The login's own signature verifies; a different password does not.
		want := signature(l.ID, l.ProductKey, l.DeviceKey, secret, itoa(l.Timestamp))
		require.True(t, l.Verify(want, secret))
		require.False(t, l.Verify(want+"0", secret))
	})
}

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{
		"/sys/pk/dk/thing/measurepoint/post", "/sys/pk/dk/thing/measurepoint/post/batch", "/sys/pk/dk/thing/measurepoint/resume/batch", "/sys/pk/dk/thing/event/e/post_reply",
		"/sys/pk/dk/thing/service/s", "/ext/session/gw/g/combine/login/batch", "/ext/session//g/combine/login", "_reply", "/sys////",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		for _, n := range []int{1, 5, 6} {
			require.Equal(t, strings.SplitN(topic, "/", n), splitTopic(topic, make([]string, n)), "split in %d", n)
		}
		tp, err := ParseTopic(topic)
		if err != nil {
			require.ErrorIs(t, err, ErrBadTopic)
			require.Equal(t, Topic{}, tp)
			return
		}
		require.NotEqual(t, KindUnknown, tp.Kind)
		require.NotEmpty(t, tp.ProductKey)
		require.NotEmpty(t, tp.DeviceKey)
		require.NotContains(t, tp.ProductKey, "/")
		require.NotContains(t, tp.DeviceKey, "/")
		if tp.Kind == KindEventPost || tp.Kind == KindServiceCall {
			require.NotEmpty(t, tp.Name)
			require.NotContains(t, tp.Name, "/")
		}
		require.Equal(t, tp.Reply, strings.HasSuffix(topic, "_reply"))
	})
}

// FuzzSubDeviceLogin decodes combine/login/batch params and checks every entry's signature.
func FuzzSubDeviceLogin(f *testing.F) {
	ok, _ := json.Marshal(SubDeviceLoginBatch{SubDevices: []SubDeviceAuth{SignSubDevice("pk", "dk", "s", 1732550400000)}})
	f.Add(ok, "s")
	f.Add([]byte(`{"subDevices":[{"productKey":"p","deviceKey":"d","timestamp":"x","sign":"","signMethod":"md5"}]}`), "")
	f.Add([]byte(`{"subDevices":null}`), "s")
	f.Add([]byte(`[`), "s")
	f.Fuzz(func(t *testing.T, params []byte, secret string) {
		var batch SubDeviceLoginBatch
		if json.Unmarshal(params, &batch) != nil {
			return
		}
		for _, a := range batch.SubDevices {
			if a.Verify(secret) {
				// Only the entry's own signature verifies.
				require.Equal(t, signature(a.ClientID, a.ProductKey, a.DeviceKey, secret, a.Timestamp), a.Sign)
			}
			resigned := a
			resigned.Sign = signature(a.ClientID, a.ProductKey, a.DeviceKey, secret, a.Timestamp)
			require.Equal(t, a.SignMethod == "" || a.SignMethod == "sha256", resigned.Verify(secret))
		}
	})
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// FuzzDecodeRecord: a telemetry record read from Kafka (written by any
// client of the bus) never panics the decoder, and what it accepts encodes
// back to bytes that decode to the same record, whether decoded into a fresh
// Record or into one that held another record (its strings reused).
func FuzzDecodeRecord(f *testing.F) {
	good := Record{Kind: RecordPost, Org: "o", Product: "p", Device: "d", Site: "s", MessageID: "1", Received: 1_700_000_000_000,
		Samples: []Sample{{Point: "WTUR.W", Time: 1_700_000_000_000, Value: 1834.2}, {Point: "X", Time: 1, Value: -1, Quality: 3, HasQuality: true}}}
	f.Add(AppendRecord(nil, &good))
	f.Add([]byte{RecordVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var fresh Record
		if DecodeRecord(data, &fresh) != nil {
			return
		}
		enc := AppendRecord(nil, &fresh)
		var again Record
		require.NoError(t, DecodeRecord(enc, &again))
		require.Equal(t, enc, AppendRecord(nil, &again))
		reused := good
		reused.Samples = append([]Sample(nil), good.Samples...)
		require.NoError(t, DecodeRecord(data, &reused))
		require.Equal(t, enc, AppendRecord(nil, &reused))
	})
}
