package api

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
)

func TestParseTopic(t *testing.T) {
	testkit.Parses(t, ParseTopic, ErrBadTopic, []testkit.Parse[Topic]{
		{In: "/sys/pk/dk/thing/measurepoint/post", Want: Topic{Kind: KindMeasurepointPost, ProductKey: "pk", DeviceKey: "dk"}},
		{In: "/sys/pk/dk/thing/measurepoint/post_reply", Want: Topic{Kind: KindMeasurepointPost, ProductKey: "pk", DeviceKey: "dk", Reply: true}},
		{In: "/sys/pk/dk/thing/measurepoint/resume", Want: Topic{Kind: KindMeasurepointResume, ProductKey: "pk", DeviceKey: "dk"}},
		{In: "/sys/pk/dk/thing/measurepoint/post/batch", Want: Topic{Kind: KindMeasurepointPostBatch, ProductKey: "pk", DeviceKey: "dk"}},
		{In: "/sys/pk/dk/thing/measurepoint/post/batch_reply", Want: Topic{Kind: KindMeasurepointPostBatch, ProductKey: "pk", DeviceKey: "dk", Reply: true}},
		{In: "/sys/pk/dk/thing/measurepoint/resume/batch", Want: Topic{Kind: KindMeasurepointResumeBatch, ProductKey: "pk", DeviceKey: "dk"}},
		{In: "/sys/pk/dk/thing/event/fault/post", Want: Topic{Kind: KindEventPost, ProductKey: "pk", DeviceKey: "dk", Name: "fault"}},
		{In: "/sys/pk/dk/thing/service/setPowerLimit", Want: Topic{Kind: KindServiceCall, ProductKey: "pk", DeviceKey: "dk", Name: "setPowerLimit"}},
		{In: "/sys/pk/dk/thing/service/setPowerLimit_reply", Want: Topic{Kind: KindServiceCall, ProductKey: "pk", DeviceKey: "dk", Name: "setPowerLimit", Reply: true}},
		{In: "/sys/gw/g1/thing/topo/add", Want: Topic{Kind: KindTopoAdd, ProductKey: "gw", DeviceKey: "g1"}},
		{In: "/ext/session/gw/g1/combine/login", Want: Topic{Kind: KindSubLogin, ProductKey: "gw", DeviceKey: "g1"}},
		{In: "/ext/session/gw/g1/combine/login/batch", Want: Topic{Kind: KindSubLoginBatch, ProductKey: "gw", DeviceKey: "g1"}},
		{In: "/sys/pk/dk/thing/event//post", Bad: true},
		{In: "/sys/pk/dk/thing/event/a/b/post", Bad: true},
		{In: "/sys/pk//thing/measurepoint/post", Bad: true},
		{In: "sys/pk/dk/thing/measurepoint/post", Bad: true},
		{In: "/sys/pk/dk/thing/other", Bad: true},
		{In: "/ext/session/gw/g1/combine/logout", Want: Topic{Kind: KindSubLogout, ProductKey: "gw", DeviceKey: "g1"}},
		{In: "/ext/session/gw/g1/combine/other", Bad: true},
		{In: "", Bad: true},
	})
}

func TestSignAndVerify(t *testing.T) {
	cred := Sign("WT01", "wind-turbine", "WT01", "s3cret", 1732550400000)
	require.Equal(t, "WT01|securemode=2,signmethod=sha256,timestamp=1732550400000|", cred.ClientID)
	require.Equal(t, "WT01&wind-turbine", cred.Username)
	// UPPER(hex(sha256("clientIdWT01deviceKeyWT01productKeywind-turbinetimestamp1732550400000s3cret")))
	require.Equal(t, "014E8391894D82CFFBFD0C84158ACD585BAB1A11D5BBF4EFD089BF6A1FEA54C2", cred.Password)

	login, err := ParseLogin(cred.ClientID, cred.Username)
	require.NoError(t, err)
	require.Equal(t, Login{ID: "WT01", ProductKey: "wind-turbine", DeviceKey: "WT01", Timestamp: 1732550400000}, login)
	require.True(t, login.Verify(cred.Password, "s3cret"))
	require.False(t, login.Verify(cred.Password, "other"))
	require.False(t, login.Verify("", "s3cret"))
	other := login
	other.Timestamp++
	require.False(t, other.Verify(cred.Password, "s3cret"), "the timestamp is signed")
}

func TestParseLoginErrors(t *testing.T) {
	for _, c := range []struct{ clientID, username string }{
		{"WT01", "WT01&pk"},
		{"WT01|securemode=2,signmethod=sha256,timestamp=1|", "WT01"},
		{"WT01|securemode=2,signmethod=md5,timestamp=1|", "WT01&pk"},
		{"WT01|securemode=2,signmethod=sha256|", "WT01&pk"},
		{"WT01|securemode=2,signmethod=sha256,timestamp=x|", "WT01&pk"},
		{"|securemode=2,signmethod=sha256,timestamp=1|", "WT01&pk"},
		{"WT01|securemode=2,signmethod=sha256,timestamp=1|", "&pk"},
	} {
		_, err := ParseLogin(c.clientID, c.username)
		require.ErrorIs(t, err, ErrBadLogin, "%q %q", c.clientID, c.username)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	in := Record{Kind: RecordResume, Org: "o", Product: "p", Device: "d", Site: "s", MessageID: "42", Received: 1_700_000_000_000,
		Samples: []Sample{
			{Point: "WTUR.W", Time: 1_700_000_000_000, Value: 1834.2},
			{Point: "WNAC.WdSpd", Time: 1_699_999_000_000, Value: -8.1, Quality: 3, HasQuality: true},
			{Point: "X", Time: 1_700_000_500_000, Value: 0, HasQuality: true},
		}}
	b := AppendRecord(nil, &in)
	var out Record
	require.NoError(t, DecodeRecord(b, &out))
	require.Equal(t, in, out)

	for i := range b {
		require.Error(t, DecodeRecord(b[:i], &out), "truncated at %d", i)
	}
	bad := append([]byte{}, b...)
	bad[0] = 9
	require.ErrorIs(t, DecodeRecord(bad, &out), ErrBadRecord)
	bad[0], bad[1] = RecordVersion, 7
	require.ErrorIs(t, DecodeRecord(bad, &out), ErrBadRecord)
}

// TestRecordDecodeReuse: decoding into a used Record gives the new record's
// values whatever the last one held, and allocates nothing for strings it
// already holds.
func TestRecordDecodeReuse(t *testing.T) {
	a := Record{Kind: RecordPost, Org: "o", Product: "p", Device: "d1", Site: "s", MessageID: "1", Received: 1000,
		Samples: []Sample{{Point: "A", Time: 1000, Value: 1}, {Point: "B", Time: 1000, Value: 2}, {Point: "C", Time: 1000, Value: 3}}}
	b := Record{Kind: RecordResume, Org: "o", Product: "q", Device: "d2", Site: "", MessageID: "2", Received: 2000,
		Samples: []Sample{{Point: "B", Time: 2000, Value: 5}, {Point: "A", Time: 1999, Value: 6, Quality: 1, HasQuality: true}}}
	c := Record{Kind: RecordPost, Org: "o2", Product: "p", Device: "d1", Site: "s", MessageID: "3", Received: 3000,
		Samples: []Sample{{Point: "B", Time: 3000}, {Point: "A", Time: 3000}, {Point: "C", Time: 3000}, {Point: "D", Time: 3000}}}
	var out Record
	for _, in := range []Record{a, b, c, a, a} {
		require.NoError(t, DecodeRecord(AppendRecord(nil, &in), &out))
		require.Equal(t, in, out)
	}
	data := AppendRecord(nil, &a)
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = DecodeRecord(data, &out) }), "the same strings again")
}

func TestMeasurepointRound(t *testing.T) {
	require.Equal(t, 7.4, Measurepoint{Resolution: 0.1}.Round(7.4321))
	require.Equal(t, 2346.0, Measurepoint{Resolution: 1}.Round(2345.5))
	require.Equal(t, 12.5, Measurepoint{Resolution: 0.5}.Round(12.3))
	require.Equal(t, 7.4321, Measurepoint{}.Round(7.4321), "no resolution: the value as it is")
}

func TestMetricName(t *testing.T) {
	require.Equal(t, "WTUR_W", MetricName("WTUR.W"))
	require.Equal(t, "WROT_PtAngValBl1", MetricName("WROT.PtAngValBl1"))
	require.Equal(t, "a_b_c", MetricName("a-b c"))
}
