package nodetest

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Metric sums the samples of the node's /metrics that match series: a
// metric name (every label set of it), or a name with some of its labels
// (`gale_http_requests_total{code="401"}` sums that code over every route).
// It is 0 when no sample matches.
func (h *Harness) Metric(t testing.TB, series string) float64 {
	t.Helper()
	name, labels, _ := strings.Cut(series, "{")
	var want []string
	if labels = strings.TrimSuffix(labels, "}"); labels != "" {
		want = strings.Split(labels, ",")
	}
	resp, err := h.Client.Get(h.BaseURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		have, _, _ := strings.Cut(strings.TrimPrefix(rest, "{"), "} ")
		for _, l := range want {
			if !strings.Contains(","+have+",", ","+l+",") {
				continue lines
			}
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, line)
		sum += f
	}
	require.NoError(t, sc.Err())
	return sum
}
