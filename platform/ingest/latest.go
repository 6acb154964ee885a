package ingest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// Point is the newest known value of one measurepoint.
type Point struct {
	Point   string  `json:"point"`
	Time    int64   `json:"time"`
	Value   float64 `json:"value"`
	Quality uint8   `json:"quality"`
}

// Latest is the last value per device and point. It is safe for concurrent use.
type Latest struct {
	mu sync.RWMutex
	// "pk/dk" → its points ordered by name: a slice of 40-byte values per
	// device rather than a map per device, and point names shared with the
	// writer's series rather than copied from every record.
	devices map[string][]Point
}

// NewLatest returns an empty snapshot.
func NewLatest() *Latest { return &Latest{devices: map[string][]Point{}} }

// Update records p for device unless a newer value is known.
func (l *Latest) Update(device string, p Point) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.update(device, p, false)
}

// updateAll records a batch's values under one lock; their device and
// point strings are the writer's own, kept as they are rather than copied.
func (l *Latest) updateAll(us []update) {
	if len(us) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range us {
		l.update(us[i].device, us[i].p, true)
	}
}

// update records p; shared says that device and p.Point may be kept without a copy.
func (l *Latest) update(device string, p Point, shared bool) {
	pts := l.devices[device]
	i, found := slices.BinarySearchFunc(pts, p.Point, func(e Point, point string) int { return strings.Compare(e.Point, point) })
	if found {
		if p.Time >= pts[i].Time {
			pts[i].Time, pts[i].Value, pts[i].Quality = p.Time, p.Value, p.Quality
		}
		return
	}
	if !shared {
		device, p.Point = strings.Clone(device), strings.Clone(p.Point)
	}
	if len(pts) == cap(pts) { // grow by a quarter rather than double: most devices stop at a few dozen points
		grown := make([]Point, len(pts), len(pts)+max(4, len(pts)/4))
		copy(grown, pts)
		pts = grown
	}
	l.devices[device] = slices.Insert(pts, i, p)
}

// Device returns the latest values of device ("pk/dk") ordered by point.
func (l *Latest) Device(device string) []Point {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return append(make([]Point, 0, len(l.devices[device])), l.devices[device]...)
}

// Restore fills the snapshot with the newest sample since since of every
// telemetry series in q, so a restart keeps the latest values.
func (l *Latest) Restore(ctx context.Context, q storage.Queryable, since time.Time) error {
	querier, err := q.Querier(since.UnixMilli(), math.MaxInt64)
	if err != nil {
		return fmt.Errorf("restore latest values: %w", err)
	}
	defer querier.Close()
	set := querier.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchRegexp, LabelPoint, ".+"))
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		lbls := s.Labels()
		if strings.HasSuffix(lbls.Get(labels.MetricName), QualitySuffix) {
			continue
		}
		it = s.Iterator(it)
		var p Point
		found := false
		for it.Next() == chunkenc.ValFloat {
			p.Time, p.Value = it.At()
			found = true
		}
		if found {
			p.Point = lbls.Get(LabelPoint)
			l.Update(lbls.Get(LabelProduct)+"/"+lbls.Get(LabelDevice), p)
		}
	}
	if err := set.Err(); err != nil {
		return fmt.Errorf("restore latest values: %w", err)
	}
	return nil
}
