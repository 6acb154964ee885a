// Package console is Gale's web console: one page of HTML, CSS and
// JavaScript embedded in the binary, served at / by every node with the
// HTTP API. The page holds no data: it signs in, keeps the session token in
// sessionStorage and calls the API with it (never in a URL).
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

// AssetPrefix is the path the console's scripts and styles are served under.
const AssetPrefix = "/console/"

//go:embed static
var static embed.FS

// csp allows the page nothing from any other origin: its own scripts,
// styles and API calls only, no inline script, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

// Handler serves the page at / and its assets under AssetPrefix.
func Handler() http.Handler {
	files, _ := fs.Sub(static, "static") // the embedded directory is always there
	assets := http.StripPrefix(AssetPrefix, http.FileServerFS(files))
	index, _ := fs.ReadFile(files, "index.html")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path == "/" {
			h.Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(index)
			return
		}
		assets.ServeHTTP(w, r)
	})
}
