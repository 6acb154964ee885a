package runs

import (
	"encoding/json"
	"testing"
)

// FuzzParse: any posted body is parsed or refused, never panics, and a
// parsed run is valid and encodes again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"kind":"loadgen","name":"x","stats":[{"name":"rate","value":1,"unit":"msg/s"}],` +
		`"plots":[{"title":"t","kind":"line","series":[{"name":"s","points":[[0,1],[1,2]]}]}]}`))
	f.Add([]byte(`{"kind":"scenario","name":"y","notes":["a\nb"],"plots":[{"title":"ledger","kind":"bar","series":[{"name":"stored","points":[[0,5]]}]}]}`))
	f.Add([]byte(`{"kind":"loadgen","name":"\u0000"}`))
	f.Add([]byte(`[1e999]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed run is invalid: %v", err)
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatalf("parsed run does not encode: %v", err)
		}
	})
}
