package rules

import "github.com/gale-iot/gale/platform/api"

// liveSamples returns the samples of a telemetry record that rules evaluate:
// none for backfill (resume), which is stored but must never alert, and
// none flagged with a bad quality (an edge's last good value when a read
// failed, a sensor the device distrusts): such a value says nothing about
// the plant now, so it neither trips a threshold nor keeps a no-data rule quiet.
func liveSamples(rec *api.Record) []Sample {
	if rec.Kind != api.RecordPost {
		return nil
	}
	out := make([]Sample, 0, len(rec.Samples))
	for _, s := range rec.Samples {
		if s.HasQuality && s.Quality != api.QualityGood {
			continue
		}
		out = append(out, Sample{Org: rec.Org, Product: rec.Product, Device: rec.Device, Site: rec.Site, Point: s.Point, Time: s.Time, Value: s.Value})
	}
	return out
}

// recordOf wraps one sample in a record, as the broker would have sent it,
// with a quality flag unless quality is good.
func recordOf(s Sample, resume bool, quality uint8) api.Record {
	kind := api.RecordPost
	if resume {
		kind = api.RecordResume
	}
	return api.Record{Kind: kind, Org: s.Org, Product: s.Product, Device: s.Device, Site: s.Site, Received: s.Time,
		Samples: []api.Sample{{Point: s.Point, Time: s.Time, Value: s.Value, Quality: quality, HasQuality: quality != api.QualityGood}}}
}
