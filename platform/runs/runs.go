// Package runs keeps the reports of the last load-generator and scenario
// runs posted to a node (POST /api/v1/runs), a bounded number of them, as
// JSON files in the node's data directory, for the console's runs page.
package runs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gale-iot/gale/platform/api"
)

// Run kinds.
const (
	KindLoadgen  = "loadgen"
	KindScenario = "scenario"
)

// Plot kinds: a line plot draws each series over time; a bar plot draws
// each series' one value as a bar.
const (
	PlotLine = "line"
	PlotBar  = "bar"
)

// Limits of a posted run.
const (
	MaxStats   = 40
	MaxNotes   = 100
	MaxNote    = 2000
	MaxPlots   = 8
	MaxSeries  = 8
	MaxPoints  = 2000
	MaxText    = 200
	DefaultMax = 50
)

// Run is the report of one run.
type Run struct {
	// ID, PostedBy and PostedAt are the node's; a posted value is ignored.
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Name     string    `json:"name"`
	Org      string    `json:"org,omitempty"`
	Pass     bool      `json:"pass"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Stats are the summary's figures, in order.
	Stats []Stat `json:"stats"`
	// Notes are lines of text: figures that are not numbers, failures.
	Notes    []string  `json:"notes,omitempty"`
	Plots    []Plot    `json:"plots,omitempty"`
	PostedBy string    `json:"postedBy,omitempty"`
	PostedAt time.Time `json:"postedAt,omitzero"`
}

// Stat is one figure of a run's summary.
type Stat struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

// Plot is a chart of a run.
type Plot struct {
	Title  string   `json:"title"`
	Kind   string   `json:"kind"`
	Unit   string   `json:"unit,omitempty"`
	Series []Series `json:"series"`
}

// Series is a named line (points [seconds since the start, value]) or a
// bar (one point [0, value]).
type Series struct {
	Name   string       `json:"name"`
	Points [][2]float64 `json:"points"`
}

// ErrInvalid is wrapped by every error of a posted run.
var ErrInvalid = errors.New("invalid run")

// Parse decodes a posted run strictly and checks it (Validate).
func Parse(b []byte) (Run, error) {
	var r Run
	if err := api.DecodeJSON(b, &r); err != nil {
		return Run{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return r, r.Validate()
}

// Validate checks a run is within the limits: known kinds, short printable
// texts, finite numbers, bounded lists.
func (r Run) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
	}
	if r.Kind != KindLoadgen && r.Kind != KindScenario {
		return bad("kind must be %s or %s", KindLoadgen, KindScenario)
	}
	if err := text("name", r.Name, MaxText, true); err != nil {
		return err
	}
	if r.Finished.Before(r.Started) {
		return bad("finished is before started")
	}
	if len(r.Stats) > MaxStats || len(r.Notes) > MaxNotes || len(r.Plots) > MaxPlots {
		return bad("stats must be at most %d, notes %d, plots %d", MaxStats, MaxNotes, MaxPlots)
	}
	for i, s := range r.Stats {
		if err := text(fmt.Sprintf("stats[%d].name", i), s.Name, MaxText, true); err != nil {
			return err
		}
		if err := text(fmt.Sprintf("stats[%d].unit", i), s.Unit, MaxText, false); err != nil {
			return err
		}
		if !finite(s.Value) {
			return bad("stats[%d].value must be a finite number", i)
		}
	}
	for i, n := range r.Notes {
		if err := text(fmt.Sprintf("notes[%d]", i), n, MaxNote, false); err != nil {
			return err
		}
	}
	for i, p := range r.Plots {
		if err := p.validate(i); err != nil {
			return err
		}
	}
	return nil
}

func (p Plot) validate(i int) error {
	at := fmt.Sprintf("plots[%d]", i)
	if p.Kind != PlotLine && p.Kind != PlotBar {
		return fmt.Errorf("%w: %s.kind must be %s or %s", ErrInvalid, at, PlotLine, PlotBar)
	}
	if err := text(at+".title", p.Title, MaxText, true); err != nil {
		return err
	}
	if err := text(at+".unit", p.Unit, MaxText, false); err != nil {
		return err
	}
	if len(p.Series) == 0 || len(p.Series) > MaxSeries {
		return fmt.Errorf("%w: %s.series must have 1 to %d series", ErrInvalid, at, MaxSeries)
	}
	for j, s := range p.Series {
		if err := text(fmt.Sprintf("%s.series[%d].name", at, j), s.Name, MaxText, true); err != nil {
			return err
		}
		if len(s.Points) > MaxPoints {
			return fmt.Errorf("%w: %s.series[%d].points must be at most %d", ErrInvalid, at, j, MaxPoints)
		}
		for _, pt := range s.Points {
			if !finite(pt[0]) || !finite(pt[1]) {
				return fmt.Errorf("%w: %s.series[%d].points must be finite numbers", ErrInvalid, at, j)
			}
		}
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// text checks a text field: valid UTF-8 of at most max bytes without
// control characters (but newlines and tabs), present when required.
func text(field, s string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return fmt.Errorf("%w: %s is required", ErrInvalid, field)
	case len(s) > max:
		return fmt.Errorf("%w: %s must be at most %d bytes", ErrInvalid, field, max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, field)
	case strings.ContainsFunc(s, func(c rune) bool { return unicode.IsControl(c) && c != '\n' && c != '\t' }):
		return fmt.Errorf("%w: %s holds control characters", ErrInvalid, field)
	}
	return nil
}

// Summary is r without its plots and notes, as lists show it.
func (r Run) Summary() Run {
	r.Plots, r.Notes = nil, nil
	return r
}

// idRE is a run id: the posting time in Unix ms and 8 random hex digits,
// so that ids sort by age and name no other file.
var idRE = regexp.MustCompile(`^[0-9]{13}-[0-9a-f]{8}$`)

// Store keeps the last runs as files DIR/ID.json.
type Store struct {
	dir string
	max int
	mu  sync.Mutex
	now func() time.Time
	// last is the newest id's time (Unix ms): ids stay in posting order
	// when two runs are posted in one millisecond.
	last int64
}

// Open opens (making it) the store in dir, keeping at most max runs
// (DefaultMax when max <= 0).
func Open(dir string, max int) (*Store, error) {
	if max <= 0 {
		max = DefaultMax
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("runs store: %w", err)
	}
	return &Store{dir: dir, max: max, now: time.Now}, nil
}

// Add stores r (valid) as posted by by, giving it its id and time, and
// removes the oldest runs past the store's bound.
func (s *Store) Add(r Run, by string) (Run, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.last = max(s.last+1, now.UnixMilli())
	r.ID, r.PostedBy, r.PostedAt = fmt.Sprintf("%013d-%s", s.last, hex.EncodeToString(rnd[:])), by, now.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return Run{}, fmt.Errorf("encode run: %w", err)
	}
	tmp := filepath.Join(s.dir, r.ID+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return Run{}, fmt.Errorf("store run: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, r.ID+".json")); err != nil {
		return Run{}, fmt.Errorf("store run: %w", err)
	}
	ids, err := s.ids()
	if err != nil {
		return r, err
	}
	for len(ids) > s.max {
		if err := os.Remove(filepath.Join(s.dir, ids[len(ids)-1]+".json")); err != nil {
			return r, fmt.Errorf("drop old run: %w", err)
		}
		ids = ids[:len(ids)-1]
	}
	return r, nil
}

// ids lists the stored runs' ids, newest first. Callers hold s.mu.
func (s *Store) ids() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && idRE.MatchString(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	return ids, nil
}

// List returns the summaries of the stored runs of the orgs visible
// allows, newest first.
func (s *Store) List(visible func(org string) bool) ([]Run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	out := []Run{}
	for _, id := range ids {
		r, err := s.read(id)
		if err != nil {
			return nil, err
		}
		if visible(r.Org) {
			out = append(out, r.Summary())
		}
	}
	return out, nil
}

// Get returns run id; ok is false when there is none (or id is not a run id).
func (s *Store) Get(id string) (r Run, ok bool, err error) {
	if !idRE.MatchString(id) {
		return Run{}, false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err = s.read(id)
	if errors.Is(err, os.ErrNotExist) {
		return Run{}, false, nil
	}
	return r, err == nil, err
}

// read reads stored run id. Callers hold s.mu.
func (s *Store) read(id string) (Run, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, id+".json"))
	if err != nil {
		return Run{}, fmt.Errorf("read run %s: %w", id, err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return Run{}, fmt.Errorf("read run %s: %w", id, err)
	}
	return r, nil
}
