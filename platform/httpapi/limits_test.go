package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/tsdb"
)

// expensive selects nothing at each of its hundreds of millions of steps: it
// costs time without holding samples, so only the timeout stops it.
const expensive = `count_over_time((vector(time()) < 0)[500000s:1ms])`

// TestExpensiveQueryDoesNotStarveTheNode: an expensive query is cut at the
// timeout while other requests are served meanwhile; one beyond the
// concurrency cap waits a bounded time and gets 503.
func TestExpensiveQueryDoesNotStarveTheNode(t *testing.T) {
	s := startServer(t, Config{}, tsdb.QueryConfig{Timeout: 1500 * time.Millisecond, MaxConcurrent: 2, MaxQueueWait: 200 * time.Millisecond, MaxPoints: 1e9}, nil)

	var wg sync.WaitGroup
	results := make([]promResponse, 2)
	codes := make([]int, 2)
	started := time.Now()
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], results[i] = s.query(t, expensive)
		}()
	}
	require.Eventually(t, func() bool { return s.metric(t, "prometheus_engine_queries", nil) == 2 }, 5*time.Second, 10*time.Millisecond,
		"both expensive queries are running")

	// Every slot is busy: a third query waits maxQueueWait, then is told to come back.
	begin := time.Now()
	code, r := s.query(t, `temp`)
	require.Equal(t, http.StatusServiceUnavailable, code, r.Error)
	require.Contains(t, r.Error, "too many concurrent queries") // had it waited for a slot, it would have run
	require.Less(t, time.Since(begin), 3*time.Second, "waited about maxQueueWait (generous bounds: make test runs packages side by side)")
	code, _, b := s.do(t, http.MethodGet, "/prometheus/api/v1/series?match[]=temp", nil, nil)
	require.Equal(t, http.StatusServiceUnavailable, code, "series reads take a query slot too: %s", b)

	// The rest of the API is served meanwhile.
	for _, path := range []string{"/healthz", "/api/v1/products", "/metrics"} {
		begin := time.Now()
		code, _, _ := s.do(t, http.MethodGet, path, nil, nil)
		require.Equal(t, http.StatusOK, code, path)
		require.Less(t, time.Since(begin), time.Second, path)
	}

	wg.Wait()
	// Run to the end the query takes hours (5·10^8 steps); its errorType below says the timeout cut it.
	require.Less(t, time.Since(started), time.Minute, "cut at the timeout, not run to the end")
	for i := range 2 {
		require.Equal(t, http.StatusServiceUnavailable, codes[i], results[i].Error)
		require.Equal(t, "timeout", results[i].ErrorType, results[i].Error)
	}
	require.Equal(t, 2.0, s.metric(t, "gale_query_refused_total", map[string]string{"reason": tsdb.ReasonTimeout}))
	require.Equal(t, 2.0, s.metric(t, "gale_query_refused_total", map[string]string{"reason": tsdb.ReasonQueueFull}))

	code, r = s.query(t, `temp`)
	require.Equal(t, http.StatusOK, code, "with the slots free again queries run: %s", r.Error)
}

func TestQueryLimitsThroughTheAPIs(t *testing.T) {
	s := startServer(t, Config{}, tsdb.QueryConfig{MaxSamples: 200, MaxPoints: 1000}, nil)
	start, end := s.now.Add(-2*time.Hour).Unix(), s.now.Unix()
	for _, tc := range []struct {
		name, path, reason, errorType string
		code                          int
	}{
		{"query_range over the points limit", "/prometheus/api/v1/query_range?" + url.Values{"query": {"temp"}, "start": {fmt.Sprint(start)}, "end": {fmt.Sprint(end)}, "step": {"5"}}.Encode(),
			tsdb.ReasonTooManyPoints, "bad_data", http.StatusBadRequest},
		{"subquery with a tiny step", "/prometheus/api/v1/query?" + url.Values{"query": {"max_over_time(temp[1h:1ms])"}}.Encode(),
			tsdb.ReasonSubqueryPoints, "bad_data", http.StatusBadRequest},
		{"too many samples", "/prometheus/api/v1/query?" + url.Values{"query": {"temp[2h]"}, "time": {fmt.Sprint(end)}}.Encode(),
			tsdb.ReasonTooManySamples, "execution", http.StatusUnprocessableEntity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.metric(t, "gale_query_refused_total", map[string]string{"reason": tc.reason})
			code, _, b := s.do(t, http.MethodGet, tc.path, nil, nil)
			require.Equal(t, tc.code, code, string(b))
			require.Contains(t, string(b), `"errorType":"`+tc.errorType+`"`)
			require.Equal(t, before+1, s.metric(t, "gale_query_refused_total", map[string]string{"reason": tc.reason}))
		})
	}
}
