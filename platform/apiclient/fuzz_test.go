package apiclient

import (
	"net/http"
	"testing"
)

// FuzzAnswerError reads any error answer into an *Error with its status and
// a message of at most maxMsg bytes (and the ellipsis), never panicking.
func FuzzAnswerError(f *testing.F) {
	for _, s := range []string{`{"error":"no such product"}`, `{"error":""}`, `{"error":42}`, "plain text\n", "", `{"error":"` + string(make([]byte, 2000)) + `"}`} {
		f.Add([]byte(s))
	}
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/api/v1/products/x", nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		e := answerError(req, http.StatusTeapot, body)
		if e.Status != http.StatusTeapot || e.Path != "/api/v1/products/x" || e.Method != http.MethodGet {
			t.Fatalf("%+v", e)
		}
		if len(e.Msg) > maxMsg+len("…") {
			t.Fatalf("message of %d bytes", len(e.Msg))
		}
	})
}
