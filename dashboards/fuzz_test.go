package dashboards

import (
	"io/fs"
	"testing"
)

// FuzzLint parses and lints arbitrary dashboard JSON, as `gale dashboards
// lint FILE` does: an error, or problems that each say what is wrong, in
// this dashboard.
func FuzzLint(f *testing.F) {
	names, err := fs.Glob(shipped, "json/*.json")
	if err != nil || len(names) == 0 {
		f.Fatalf("no shipped dashboards: %v", err)
	}
	for _, n := range names {
		b, err := fs.ReadFile(shipped, n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"panels":[{"id":1,"title":"x","targets":[{"expr":"rate($x[$__rate_interval])"}]}],"templating":{"list":[{"name":"x","query":{"query":"label_values(up, job)"}}]}}`))
	known, err := KnownMetrics()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse("fuzz.json", b)
		if err != nil {
			return
		}
		problems := Lint(d, known)
		for _, p := range problems {
			if p.Msg == "" || p.Dashboard != "fuzz.json" {
				t.Fatalf("a problem that does not say what, or of another dashboard: %#v", p)
			}
		}
	})
}
