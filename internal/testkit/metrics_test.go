package testkit

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
)

func TestScrapeSumsTheSelectedSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lag", Help: "h"}, []string{"group", "node"})
	total := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "msgs_total", Help: "h"}, []string{"reason"})
	reg.MustRegister(lag, total)
	lag.WithLabelValues("a", "n1").Set(3)
	lag.WithLabelValues("b", "n1").Set(4)
	total.WithLabelValues("bad").Add(2)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	for _, tc := range []struct {
		series string
		want   float64
		found  bool
	}{
		{"lag", 7, true},
		{`lag{group="a"}`, 3, true},
		{`lag{node="n1",group="b"}`, 4, true},
		{`lag{group="c"}`, 0, false},
		{`msgs_total{reason="bad"}`, 2, true},
		{"absent", 0, false},
	} {
		v, ok := Scrape(t, http.DefaultClient, srv.URL, tc.series)
		require.Equal(t, tc.want, v, tc.series)
		require.Equal(t, tc.found, ok, tc.series)
		v, ok = Gathered(t, reg, tc.series)
		require.Equal(t, tc.want, v, tc.series)
		require.Equal(t, tc.found, ok, tc.series)
	}
}
