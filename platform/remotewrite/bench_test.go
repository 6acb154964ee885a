package remotewrite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
)

// BenchmarkHandle ships consumer batches of 5,000 records (the bus's
// default maxBatch) of 10 points from 1,000 devices, one request of 2,000
// samples at a time, to an httptest receiver on 127.0.0.1 that either only
// reads the body or also decodes it as a receiver must (snappy, protobuf).
func BenchmarkHandle(b *testing.B) {
	const records, points, devices = 5000, 10, 1000
	now := time.Now().UnixMilli()
	batch := make([]bus.Message, records)
	for i := range batch {
		r := api.Record{Kind: api.RecordPost, Org: "bench", Product: "wind-turbine", Device: fmt.Sprintf("WT%04d", i%devices), Site: "farm", Received: now + int64(i)}
		for p := range points {
			r.Samples = append(r.Samples, api.Sample{Point: fmt.Sprintf("WTUR.P%d", p), Time: r.Received, Value: float64(i * p)})
		}
		batch[i] = bus.Message{Offset: int64(i), Value: api.AppendRecord(nil, &r)}
	}
	for _, decode := range []bool{false, true} {
		b.Run(fmt.Sprintf("decode=%t", decode), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				if err == nil && decode {
					var req prompb.WriteRequest
					if body, err = snappy.Decode(nil, body); err == nil {
						err = req.Unmarshal(body)
					}
				}
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			b.Cleanup(srv.Close)
			w := newWriter(b, Config{URL: srv.URL})
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				require.NoError(b, w.Handle(context.Background(), batch))
			}
			b.ReportMetric(float64(records*b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(records*points*b.N)/b.Elapsed().Seconds(), "samples/s")
			require.Equal(b, float64(records*points*b.N), testutil.ToFloat64(w.sent))
		})
	}
}
