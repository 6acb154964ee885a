package nodetest

import (
	"testing"

	"github.com/gale-iot/gale/internal/testkit"
)

// Metric sums the samples of the node's /metrics that series selects: a
// metric name (every label set of it), or a name with some of its labels
// (`gale_http_requests_total{code="401"}` sums that code over every route).
// It is 0 when no sample matches.
func (h *Harness) Metric(t testing.TB, series string) float64 {
	t.Helper()
	v, _ := testkit.Scrape(t, h.Client, h.BaseURL+"/metrics", series)
	return v
}
