package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHandler serves the page and its assets with the CSP, and nothing else.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for path, want := range map[string]int{
		"/": http.StatusOK, AssetPrefix + "app.js": http.StatusOK, AssetPrefix + "chart.js": http.StatusOK, AssetPrefix + "app.css": http.StatusOK,
		AssetPrefix + "nope.js": http.StatusNotFound, AssetPrefix + "../console.go": http.StatusNotFound,
	} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, path)
		require.Equal(t, csp, resp.Header.Get("Content-Security-Policy"), path)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
		if path == "/" {
			require.Contains(t, string(b), `<script src="/console/app.js" defer></script>`)
		}
	}
}

// TestAssetsStayOnTheirOrigin: no asset names another host (the SVG namespace is an identifier, not a request).
func TestAssetsStayOnTheirOrigin(t *testing.T) {
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for _, name := range []string{"index.html", "app.js", "chart.js", "app.css"} {
		b, err := static.ReadFile("static/" + name)
		require.NoError(t, err)
		for _, m := range url.FindAllString(string(b), -1) {
			require.True(t, strings.HasPrefix(m, "http://www.w3.org"), "%s names another host: %s", name, m)
		}
		require.NotContains(t, string(b), "innerHTML", name)
	}
}
