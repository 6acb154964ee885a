package ingest

import (
	"github.com/prometheus/prometheus/model/labels"

	"github.com/gale-iot/gale/platform/api"
)

// Label names of telemetry series.
const (
	LabelPoint   = "point"
	LabelOrg     = "org"
	LabelProduct = "product"
	LabelDevice  = "device"
	LabelSite    = "site"
)

// QualitySuffix names the series that stores a point's quality flags: WTUR_W_quality.
const QualitySuffix = "_quality"

// SeriesKey identifies a telemetry series: one point of one device, its
// value or (Quality) its quality flags. It is comparable, so writers use it
// to cache what they derived from a series' labels.
type SeriesKey struct {
	Org, Site, Product, Device, Point string
	Quality                           bool
}

// KeyOf returns the key of the series that stores point of r's device.
func KeyOf(r *api.Record, point string, quality bool) SeriesKey {
	return SeriesKey{r.Org, r.Site, r.Product, r.Device, point, quality}
}

// Labels returns the series' labels, the one definition shared by the TSDB
// writer and remote write: __name__ is the point as a metric name (with
// QualitySuffix for quality), the original point, org, product, device, site.
func (k SeriesKey) Labels() labels.Labels {
	name := api.MetricName(k.Point)
	if k.Quality {
		name += QualitySuffix
	}
	return labels.New(
		labels.Label{Name: labels.MetricName, Value: name},
		labels.Label{Name: LabelPoint, Value: k.Point},
		labels.Label{Name: LabelOrg, Value: k.Org},
		labels.Label{Name: LabelProduct, Value: k.Product},
		labels.Label{Name: LabelDevice, Value: k.Device},
		labels.Label{Name: LabelSite, Value: k.Site},
	)
}
