package rules

import "github.com/gale-iot/gale/platform/api"

// live reports whether rules evaluate sample s of a telemetry record: not
// one flagged with a bad quality (an edge's last good value when a read
// failed, a sensor the device distrusts): such a value says nothing about
// the plant now, so it neither trips a threshold nor keeps a no-data rule
// quiet. live does not look at the record's kind: observeRecord evaluates
// no sample of backfill (resume), which is stored but must never alert.
func live(s *api.Sample) bool { return !s.HasQuality || s.Quality == api.QualityGood }

// observeRecord evaluates the live samples of a telemetry record; late
// counts those not evaluated because a newer sample of their point was seen.
// The samples left out for their quality still show that the record's
// source is alive and how far its event time got (Engine.Heard). source and
// lane name the stream the record came in (see Sample).
func observeRecord(e *Engine, rec *api.Record, source, lane string, out []Transition) (_ []Transition, late int) {
	if rec.Kind != api.RecordPost {
		return out, 0
	}
	n := 0
	for i := range rec.Samples {
		s := &rec.Samples[i]
		if !live(s) {
			continue
		}
		n++
		ts, ok := e.Observe(Sample{Org: rec.Org, Product: rec.Product, Device: rec.Device, Site: rec.Site, Point: s.Point, Time: s.Time, Value: s.Value,
			Source: source, Lane: lane, Received: rec.Received})
		if !ok {
			late++
		}
		out = append(out, ts...)
	}
	if n < len(rec.Samples) {
		h := Sample{Org: rec.Org, Product: rec.Product, Device: rec.Device, Site: rec.Site, Source: source, Lane: lane, Received: rec.Received}
		for _, s := range rec.Samples {
			h.Time = max(h.Time, s.Time)
		}
		e.Heard(h)
	}
	return out, late
}

// recordOf wraps one sample in a record, as the broker would have sent it
// on receiving it at received, with a quality flag unless quality is good.
func recordOf(s Sample, received int64, resume bool, quality uint8) api.Record {
	kind := api.RecordPost
	if resume {
		kind = api.RecordResume
	}
	return api.Record{Kind: kind, Org: s.Org, Product: s.Product, Device: s.Device, Site: s.Site, Received: received,
		Samples: []api.Sample{{Point: s.Point, Time: s.Time, Value: s.Value, Quality: quality, HasQuality: quality != api.QualityGood}}}
}
