package httpapi

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/gorilla/mux"
)

// ui holds the dashboard: one page, its script and style, and the vendored
// uPlot (ui/vendor/README.md says where it came from). Everything is
// served from the binary: the page needs nothing but apigw.
//
//go:embed ui/index.html ui/app.js ui/app.css ui/vendor/uPlot.iife.min.js ui/vendor/uPlot.min.css
var ui embed.FS

// dashboardCSP keeps the page to its own origin. uPlot sizes its elements
// through style attributes, hence 'unsafe-inline' for styles only.
const dashboardCSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"

// registerDashboard serves the page at / and its files under /ui/.
func (s *Server) registerDashboard(r *mux.Router) {
	files, err := fs.Sub(ui, "ui")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	static := http.StripPrefix("/ui/", http.FileServerFS(files))
	r.Handle("/", dashboardHeaders(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.ServeFileFS(w, req, files, "index.html")
	}))).Methods(http.MethodGet, http.MethodHead)
	r.PathPrefix("/ui/").Handler(dashboardHeaders(static)).Methods(http.MethodGet, http.MethodHead)
}

// mountDashboard routes the dashboard's paths of an outer router to s.
func mountDashboard(r *mux.Router, s *Server) {
	r.Path("/").Handler(s)
	r.PathPrefix("/ui/").Handler(s)
}

// dashboardHeaders asks browsers to revalidate (the files change with the
// binary, and embedded files carry no modification time) and sets the
// page's security policy.
func dashboardHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
