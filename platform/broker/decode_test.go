package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// FuzzDecodePost: the single-pass decode of a measurepoint post, where it
// answers, agrees with the two-pass decode it short-cuts (api.Request, then
// params), and so do the samples validated from it.
func FuzzDecodePost(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","method":"thing.measurepoint.post","params":{"measurepoints":{"T":21.5,"On":true,"N":3,"M":2},"time":1732550400000}}`,
		`{"id":"2","params":{"measurepoints":{"T":{"value":1,"quality":0}}}}`,
		`{"id":"3","params":[{"measurepoints":{"T":1}}]}`,
		`{"id":"4","params":{"measurepoints":{"T":1}},"params":{"measurepoints":{"N":2}}}`,
		`{"id":"5","par\u0061ms":{"measurepoints":{"T":1}},"params":{"measurepoints":{"N":2}}}`,
		`{"id":"6","params":{"measurepoints":{"T":1},"measurepoints":{"N":2}}}`,
		`{"id":"7","params":null}`, `{"id":"8"}`, `{"id":9,"params":{"measurepoints":{"T":1}}}`,
		`{"id":"10","params":{"measurepoints":{"T":1},"time":"x"}}`, `{"ID":"11","Params":{"Measurepoints":{"T":2}}}`,
		`{"id":"12","params":{"measurepoints":{}}}`, `not json`, `{"id":"13","params":{"measurepoints":null}}`,
		`{"id":"14","params":{"measurepoints":{"T":1,"N":2},"measurepoints":null,"measurepoints":{"M":3}}}`,
		`{"id":"15","params":{"measurepoints":{"T":"1.5","On":"true","N":{"value":3,"quality":9}},"time":1.5}}`,
		`{"id":"16","params":{"measurepoints":{"T":1,"T":"x","X":1,"N":1.5}}}`, `{"iD":"17","params":{"measurepoints":{"T":1}}}`,
		`{"id":"18","extra":1,"params":{"measurepoints":{"T":1}}}`, "{\"id\":\"\xff\",\"params\":{\"measurepoints\":{\"T\":1}}}",
		`{"id":null,"version":null,"params":{"time":null,"measurepoints":{"T":null}}}`, `[{"params":{"measurepoints":{"T":1}}}]`,
		`{"id":"19","params":{"time":1732550399000,"measurepoints":null,"measurepoints":{"T":1}}}`,
	} {
		f.Add([]byte(s))
	}
	_, model := fuzzModel(f)
	win := fuzzWindow()
	f.Fuzz(func(t *testing.T, payload []byte) {
		var fast api.Request
		post := decodeBatch(payload, &fast, false)
		if post == nil {
			return // decoded in two passes, as before
		}
		var slow api.Request
		require.NoError(t, json.Unmarshal(payload, &slow), "the single pass took what the two-pass decode refuses")
		require.Equal(t, slow.ID, fast.ID)
		require.Equal(t, slow.Version, fast.Version)
		require.Equal(t, slow.Method, fast.Method)

		recFast, recSlow := api.Record{Received: win.now}, api.Record{Received: win.now}
		codeF, reasonF, errF := validateEntries(&recFast, post.entries, model, win)
		codeS, reasonS, errS := validateSamples(&recSlow, slow.Params, model, win)
		releaseBatch(post)
		require.Equal(t, codeS, codeF)
		require.Equal(t, reasonS, reasonF)
		if errS != nil || errF != nil {
			require.EqualError(t, errF, fmt.Sprint(errS), "the same refusal whatever order the points are read in")
		} else {
			require.ElementsMatch(t, recSlow.Samples, recFast.Samples)
		}
	})
}

// TestDecodePostSinglePass: the forms devices send are decoded in one
// pass, without allocating for their points, and the forms whose meaning
// the struct decode's rules decide are left to it.
func TestDecodePostSinglePass(t *testing.T) {
	for _, s := range []string{
		`{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"T":21.5,"On":true,"N":3},"time":1732550400000}}`,
		`{ "id" : "2" , "params" : { "time" : 1 , "measurepoints" : { "T" : { "value" : 1 , "quality" : 0 } , "N" : "3" } } }`,
		`{"id":"3","params":{"measurepoints":{"T":1,"T":2},"measurepoints":{"N":3}}}`,
		`{"id":null,"params":{"measurepoints":{"T":null}}}`,
		`{"id":"4","params":[{"measurepoints":{"T":1},"time":1},{"measurepoints":{"N":2}}]}`,
	} {
		var req api.Request
		b := decodeBatch([]byte(s), &req, false)
		require.NotNil(t, b, s)
		for _, en := range b.entries {
			require.NotEmpty(t, en.points, s)
		}
		releaseBatch(b)
	}
	for _, s := range []string{
		`{"ID":"1","params":{"measurepoints":{"T":1}}}`, `{"id":"1","extra":0,"params":{"measurepoints":{"T":1}}}`,
		`{"id":"1","params":{"measurepoints":{"T":1},"time":1.5}}`, `{"id":1,"params":{"measurepoints":{"T":1}}}`,
		"{\"id\":\"\xff\",\"params\":{\"measurepoints\":{\"T\":1}}}", `{"id":"1","params":{"measurepoints":{}}}`,
		`{"id":"1","params":{"measurepoints":{"T":1},"measurepoints":null}}`, `{"id":"1","params":{"measurepoints":{"T\u0031":1}}}`,
		`{"id":"1","params":{"measurepoints":{"T":1}}`, `{"id":"1","params":[]}`, `{"id":"1","params":[{"measurepoints":{"T":1}},null]}`,
		`{"id":"1","params":[{"productKey":"p","deviceKey":"a","measurepoints":{"T":1}}]}`,
	} {
		var req api.Request
		require.Nil(t, decodeBatch([]byte(s), &req, false), s)
	}
	var many bytes.Buffer
	many.WriteString(`{"id":"1","params":{"measurepoints":{`)
	for i := range maxPostPoints + 1 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `"P%d":1`, i)
	}
	many.WriteString(`}}}`)
	var req api.Request
	require.Nil(t, decodeBatch(many.Bytes(), &req, false), "more than maxPostPoints points")
}

// TestDecodeBatchSinglePass: a post/batch as the edge sends it is decoded
// in one pass, and the forms the two-pass decode decides are left to it.
func TestDecodeBatchSinglePass(t *testing.T) {
	params, err := json.Marshal([]api.SubDeviceMeasurepoints{
		{ProductKey: "p", DeviceKey: "a", Measurepoints: map[string]json.RawMessage{"T": []byte("21.5"), "N": []byte("3")}, Time: 1},
		{ProductKey: "p", DeviceKey: "b", Measurepoints: map[string]json.RawMessage{"On": []byte("true")}},
	})
	require.NoError(t, err)
	payload, err := json.Marshal(api.Request{ID: "7", Version: "1.0", Method: "thing.measurepoint.post.batch", Params: params})
	require.NoError(t, err)
	var req api.Request
	b := decodeBatch(payload, &req, true)
	require.NotNil(t, b)
	require.Equal(t, api.Request{ID: "7", Version: "1.0", Method: "thing.measurepoint.post.batch"}, req)
	require.Len(t, b.entries, 2)
	require.Equal(t, "a", string(b.entries[0].deviceKey))
	require.Len(t, b.entries[0].points, 2)
	require.Equal(t, int64(1), b.entries[0].time)
	require.Equal(t, "On", string(b.entries[1].points[0].id))
	releaseBatch(b)
	for _, s := range []string{
		`{"id":"1","params":[]}`, `{"id":"1","params":null}`, `{"id":"1","params":{"measurepoints":{"T":1}}}`,
		`{"id":"1","params":[null]}`, `{"id":"1","params":[{"productKey":"p","deviceKey":"a","other":1}]}`,
		`{"id":"1","params":[{"productKey":1,"deviceKey":"a"}]}`, `{"id":"1","params":[{"productKey":"p","deviceKey":"a"}],"x":0}`,
	} {
		var req api.Request
		require.Nil(t, decodeBatch([]byte(s), &req, true), s)
	}
}

// BenchmarkDecodePost compares the two decodes of a post of 10
// measurepoint members (over the fuzz model's 4 points, so some repeat),
// validation included.
//
//	go test -run '^$' -bench DecodePost -benchmem -count 5 ./platform/broker/
func BenchmarkDecodePost(b *testing.B) {
	_, model := fuzzModel(b)
	win := fuzzWindow()
	payload := []byte(`{"id":"123","method":"thing.measurepoint.post","params":{"measurepoints":{` +
		`"T":21.5,"On":true,"N":3,"M":2,"T":22.5,"N":4,"M":1,"On":false,"T":23.5,"N":5},"time":1732550400000}}`)
	b.Run("two-pass", func(b *testing.B) {
		for range b.N {
			var req api.Request
			if err := json.Unmarshal(payload, &req); err != nil {
				b.Fatal(err)
			}
			rec := api.Record{Received: win.now}
			if _, _, err := validateSamples(&rec, req.Params, model, win); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("single-pass", func(b *testing.B) {
		for range b.N {
			var req api.Request
			post := decodeBatch(payload, &req, false)
			if post == nil {
				b.Fatal("not decoded in one pass")
			}
			rec := api.Record{Received: win.now}
			if _, _, err := validateEntries(&rec, post.entries, model, win); err != nil {
				b.Fatal(err)
			}
			releaseBatch(post)
		}
	})
}

// BenchmarkDecodeTurbinePost is what prepare does with a device's post of
// 10 distinct float points (the loadgen profile): the single-pass decode,
// validation against the thing model and the record for gale.telemetry.
// Allocations per post are the figure to read (-benchmem).
//
//	go test -run '^$' -bench DecodeTurbinePost -benchmem ./platform/broker/
func BenchmarkDecodeTurbinePost(b *testing.B) {
	var points []api.Measurepoint
	payload := []byte(`{"id":"123","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{`)
	for i := range 10 {
		id := fmt.Sprintf("WTUR.P%d", i)
		points = append(points, api.Measurepoint{ID: id, Type: api.TypeFloat})
		if i > 0 {
			payload = append(payload, ',')
		}
		payload = fmt.Appendf(payload, `"%s":%g`, id, 1234.5+float64(i)*0.37)
	}
	payload = append(payload, `},"time":1732550400000}}`...)
	reg := testRegistry(b, api.ThingModel{Measurepoints: points})
	model, ok := reg.Model(testProduct)
	require.True(b, ok)
	win := fuzzWindow()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for range b.N {
		var req api.Request
		post := decodeBatch(payload, &req, false)
		if post == nil {
			b.Fatal("not decoded in one pass")
		}
		rec := api.Record{Org: "org", Product: testProduct, Device: "d1", MessageID: req.ID, Received: win.now, Samples: post.samples[:0]}
		if _, _, err := validateEntries(&rec, post.entries, model, win); err != nil {
			b.Fatal(err)
		}
		buf = api.AppendRecord(buf[:0], &rec)
		post.samples = rec.Samples
		releaseBatch(post)
	}
}
