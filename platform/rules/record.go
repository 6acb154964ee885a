package rules

import "github.com/gale-iot/gale/platform/api"

// liveSamples returns the samples of a telemetry record that rules evaluate:
// none for backfill (resume), which is stored but must never alert.
func liveSamples(rec *api.Record) []Sample {
	if rec.Kind != api.RecordPost {
		return nil
	}
	out := make([]Sample, len(rec.Samples))
	for i, s := range rec.Samples {
		out[i] = Sample{Org: rec.Org, Product: rec.Product, Device: rec.Device, Site: rec.Site, Point: s.Point, Time: s.Time, Value: s.Value}
	}
	return out
}

// recordOf wraps one sample in a record, as the broker would have sent it.
func recordOf(s Sample, resume bool) api.Record {
	kind := api.RecordPost
	if resume {
		kind = api.RecordResume
	}
	return api.Record{Kind: kind, Org: s.Org, Product: s.Product, Device: s.Device, Site: s.Site, Received: s.Time,
		Samples: []api.Sample{{Point: s.Point, Time: s.Time, Value: s.Value}}}
}
