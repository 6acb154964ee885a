// Package dashboards ships Gale's Grafana dashboards (json/*.json, generated
// from the thing models and the shipped rules by the package's golden test),
// lints them, checks that every panel query returns data from a live Gale,
// and provisions them into Grafana.
package dashboards

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"sort"
)

//go:embed json/*.json
var shipped embed.FS

//go:embed prometheus/gale-scrape.yml
var scrapeConfig []byte

// ScrapeConfig returns the shipped Prometheus configuration that scrapes
// Gale's nodes (job gale) and edge gateways (job gale-edge).
func ScrapeConfig() []byte { return slices.Clone(scrapeConfig) }

// DatasourceUID is the uid of the Prometheus data source the dashboards
// query; `gale dashboards push` and the exported provisioning create it.
const DatasourceUID = "gale"

// FolderUID and FolderTitle name the Grafana folder of the dashboards.
const (
	FolderUID   = "gale"
	FolderTitle = "Gale"
)

// Dashboard is one Grafana dashboard: its JSON as shipped and the parts
// the lint and the check read.
type Dashboard struct {
	// File is the file name, e.g. fleet.json.
	File        string      `json:"-"`
	JSON        []byte      `json:"-"`
	UID         string      `json:"uid"`
	Title       string      `json:"title"`
	Panels      []Panel     `json:"panels"`
	Templating  Templating  `json:"templating"`
	Annotations Annotations `json:"annotations"`
}

// Templating holds the template variables.
type Templating struct {
	List []Variable `json:"list"`
}

// Annotations holds the annotation queries.
type Annotations struct {
	List []Annotation `json:"list"`
}

// DatasourceRef points at a data source by uid.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is a panel; rows carry their collapsed panels in Panels.
type Panel struct {
	ID         int            `json:"id"`
	Title      string         `json:"title"`
	Interval   string         `json:"interval,omitempty"`
	Repeat     string         `json:"repeat,omitempty"`
	Datasource *DatasourceRef `json:"datasource,omitempty"`
	Targets    []Target       `json:"targets,omitempty"`
	Panels     []Panel        `json:"panels,omitempty"`
}

// Target is a panel's PromQL query.
type Target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat,omitempty"`
	Instant      bool           `json:"instant,omitempty"`
	Range        bool           `json:"range,omitempty"`
	Datasource   *DatasourceRef `json:"datasource,omitempty"`
}

// Variable is a template variable. Query is a string or, in newer Grafana,
// an object with a query field.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query,omitempty"`
	Multi      bool            `json:"multi,omitempty"`
	IncludeAll bool            `json:"includeAll,omitempty"`
	AllValue   string          `json:"allValue,omitempty"`
	Datasource *DatasourceRef  `json:"datasource,omitempty"`
}

// Annotation is an annotation query; Grafana's built-in annotations have no Expr.
type Annotation struct {
	Name        string         `json:"name"`
	Expr        string         `json:"expr,omitempty"`
	TitleFormat string         `json:"titleFormat,omitempty"`
	TextFormat  string         `json:"textFormat,omitempty"`
	Datasource  *DatasourceRef `json:"datasource,omitempty"`
}

// QueryText returns the variable's query as text.
func (v Variable) QueryText() string {
	if len(v.Query) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var obj struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &obj)
	return obj.Query
}

// Query is one PromQL query of a dashboard: a panel target or an annotation.
type Query struct {
	// Where names the panel (or annotation) for messages.
	Where string
	RefID string
	Expr  string
	// Instant queries are evaluated at one time rather than over the range.
	Instant bool
	// Interval is the panel's minimum step, e.g. "10m"; empty for the default.
	Interval string
}

// Queries returns every panel target and annotation query, rows' nested panels included.
func (d *Dashboard) Queries() []Query {
	var out []Query
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			out = append(out, Query{Where: fmt.Sprintf("panel %d %q", p.ID, p.Title), RefID: t.RefID, Expr: t.Expr,
				Instant: t.Instant && !t.Range, Interval: p.Interval})
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out = append(out, Query{Where: fmt.Sprintf("annotation %q", a.Name), Expr: a.Expr})
		}
	}
	return out
}

// AllPanels returns the panels with rows' nested panels flattened in.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Parse decodes a dashboard's JSON.
func Parse(file string, b []byte) (*Dashboard, error) {
	d := &Dashboard{File: file, JSON: b}
	if err := json.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", file, err)
	}
	return d, nil
}

// Shipped returns Gale's dashboards, sorted by file name.
func Shipped() ([]*Dashboard, error) {
	return Load(shipped, "json")
}

// Load reads every *.json file of dir in fsys as a dashboard.
func Load(fsys fs.FS, dir string) ([]*Dashboard, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return readAll(names, func(n string) ([]byte, error) { return fs.ReadFile(fsys, n) })
}

// readAll reads each of files with read and parses it as a dashboard named
// by the file's base name.
func readAll(files []string, read func(file string) ([]byte, error)) ([]*Dashboard, error) {
	var out []*Dashboard
	for _, f := range files {
		b, err := read(f)
		if err != nil {
			return nil, fmt.Errorf("read dashboard: %w", err)
		}
		d, err := Parse(filepath.Base(f), b)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
