package testkit

import (
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
)

// Scrape reads the exposition at url (a /metrics endpoint) and returns the
// sum of the counters, gauges and untyped samples that series selects, and
// whether any did. series is a PromQL selector: a name, a name with some of
// its labels (`gale_kafka_consumer_lag{group="gale-tsdb"}`), or more.
func Scrape(t testing.TB, client *http.Client, url, series string) (float64, bool) {
	t.Helper()
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	return ScrapeText(t, resp.Body, series)
}

// ScrapeText is Scrape of an exposition already fetched (the text format).
func ScrapeText(t testing.TB, exposition io.Reader, series string) (float64, bool) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(exposition)
	require.NoError(t, err)
	mfs := make([]*dto.MetricFamily, 0, len(families))
	for _, mf := range families {
		mfs = append(mfs, mf)
	}
	return sum(t, mfs, series)
}

// Gathered is Scrape of what g gathers, without HTTP.
func Gathered(t testing.TB, g prometheus.Gatherer, series string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	return sum(t, mfs, series)
}

func sum(t testing.TB, mfs []*dto.MetricFamily, series string) (total float64, found bool) {
	t.Helper()
	matchers, err := parser.NewParser(parser.Options{}).ParseMetricSelector(series)
	require.NoError(t, err, series)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			b := labels.NewScratchBuilder(len(m.GetLabel()) + 1)
			b.Add(model.MetricNameLabel, mf.GetName())
			for _, l := range m.GetLabel() {
				b.Add(l.GetName(), l.GetValue())
			}
			b.Sort()
			if !matches(b.Labels(), matchers) {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				total += m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				total += m.GetUntyped().GetValue()
			default:
				continue
			}
			found = true
		}
	}
	return total, found
}

func matches(ls labels.Labels, matchers []*labels.Matcher) bool {
	for _, m := range matchers {
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}
