package httpapi

import (
	"net/http"

	"github.com/gorilla/mux"
)

// captureRoute is a mux middleware: it runs only for matched routes and
// records the route template for the log and the metric.
func captureRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st := stateFrom(r.Context()); st != nil {
			if tpl, err := mux.CurrentRoute(r).GetPathTemplate(); err == nil {
				st.route = tpl
			}
		}
		next.ServeHTTP(w, r)
	})
}
