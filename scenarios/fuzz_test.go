package scenarios

import (
	"testing"

	"github.com/gale-iot/gale/platform/api/fuzzinput"
)

// FuzzParse parses arbitrary scenario YAML: an error, or a scenario that
// validates again and knows the file line of every step and assertion (its
// errors and failures name them).
func FuzzParse(f *testing.F) {
	fuzzinput.Seed(f, "*.yaml", "testdata/*.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if s != nil {
				t.Fatalf("error %v with a scenario", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("a parsed scenario does not validate: %v", err)
		}
		for i := range s.Timeline {
			if s.StepLine(i) <= 0 {
				t.Fatalf("timeline[%d] has no line", i)
			}
		}
		for i := range s.Assert {
			if s.AssertLine(i) <= 0 {
				t.Fatalf("assert[%d] has no line", i)
			}
		}
	})
}
