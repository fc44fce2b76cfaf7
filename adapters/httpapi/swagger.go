package httpapi

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/gorilla/mux"
	httpSwagger "github.com/swaggo/http-swagger/v2"

	"github.com/gpufleet/telemetry/docs" // registers the generated spec with swag
)

// swaggerIndex is the Swagger UI entry page.
const swaggerIndex = "/swagger/index.html"

// specJSON renders the compiled spec once. swag's ReadDoc rewrites the
// shared docs.SwaggerInfo on every call, so concurrent /swagger/doc.json
// requests through httpSwagger raced (seen under -race once the spec grew).
var specJSON = sync.OnceValue(func() []byte { return []byte(docs.SwaggerInfo.ReadDoc()) })

// registerSwagger serves Swagger UI under /swagger/ and the generated spec
// at /swagger/doc.json (from docs.SwaggerInfo, so it is the spec compiled
// into this binary).
func (s *Server) registerSwagger(r *mux.Router) {
	ui := httpSwagger.Handler(
		httpSwagger.URL("/swagger/doc.json"),
		httpSwagger.InstanceName(docs.SwaggerInfo.InstanceName()),
	)
	toIndex := func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, swaggerIndex, http.StatusMovedPermanently)
	}
	// httpSwagger's own redirect for the bare prefix goes to //index.html.
	r.HandleFunc("/swagger", toIndex).Methods(http.MethodGet)
	r.HandleFunc("/swagger/", toIndex).Methods(http.MethodGet)
	r.HandleFunc("/swagger/doc.json", func(w http.ResponseWriter, _ *http.Request) {
		doc := specJSON()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
		_, _ = w.Write(doc) // a client that hung up is not an error of ours
	}).Methods(http.MethodGet)
	r.PathPrefix("/swagger/").Handler(ui).Methods(http.MethodGet)
}
