package ingest

import (
	"context"
	"fmt"
	"math"
	"sort"
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
	mu      sync.RWMutex
	devices map[string]map[string]Point // "pk/dk" → point → value
}

// NewLatest returns an empty snapshot.
func NewLatest() *Latest { return &Latest{devices: map[string]map[string]Point{}} }

// Update records p for device unless a newer value is known.
func (l *Latest) Update(device string, p Point) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pts := l.devices[device]
	if pts == nil {
		pts = map[string]Point{}
		l.devices[device] = pts
	}
	if cur, ok := pts[p.Point]; !ok || p.Time >= cur.Time {
		pts[p.Point] = p
	}
}

// Device returns the latest values of device ("pk/dk") ordered by point.
func (l *Latest) Device(device string) []Point {
	l.mu.RLock()
	out := make([]Point, 0, len(l.devices[device]))
	for _, p := range l.devices[device] {
		out = append(out, p)
	}
	l.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Point < out[j].Point })
	return out
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
