package httpapi

import (
	"cmp"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/ports"
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// Logger receives the access log and errors; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the request-duration histogram and the GPU
	// hosts' last-seen gauge; nil registers them nowhere.
	Registerer prometheus.Registerer
	// DefaultLimit is the page size when the client gives no limit; 0 means
	// DefaultLimit (1000). It is capped at MaxLimit.
	DefaultLimit int
	// MaxLimit is the largest limit a client may ask for; 0 means MaxLimit
	// (10000).
	MaxLimit int
	// MaxStreams caps the NDJSON streams served at once; one more is a 429.
	// 0 means DefaultMaxStreams.
	MaxStreams int
	// StreamMaxDuration and StreamMaxRows bound one NDJSON stream; a stream
	// that reaches either ends with a StreamLimitLine and an aborted
	// connection. 0 means DefaultStreamMaxDuration and DefaultStreamMaxRows.
	StreamMaxDuration time.Duration
	StreamMaxRows     int
}

// Server is the REST API: an http.Handler serving /api/v1/…, the Swagger UI
// at /swagger/ and the spec at /swagger/doc.json. It is immutable after New
// and safe for concurrent use.
type Server struct {
	reader       ports.TelemetryReader
	log          *slog.Logger
	duration     *prometheus.HistogramVec
	defaultLimit int
	maxLimit     int
	streams      *streamSlots
	streamMaxDur time.Duration // immutable
	streamMaxRow int           // immutable
	router       *mux.Router
	handler      http.Handler
}

var _ http.Handler = (*Server)(nil)

// allMethods are tried to build the Allow header of a 405.
var allMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// New builds the API over reader.
func New(reader ports.TelemetryReader, opts Options) *Server {
	s := &Server{
		reader:       reader,
		log:          logger(opts.Logger),
		maxLimit:     opts.MaxLimit,
		defaultLimit: opts.DefaultLimit,
		streams:      &streamSlots{max: int64(cmp.Or(max(opts.MaxStreams, 0), DefaultMaxStreams))},
		streamMaxDur: cmp.Or(max(opts.StreamMaxDuration, 0), DefaultStreamMaxDuration),
		streamMaxRow: cmp.Or(max(opts.StreamMaxRows, 0), DefaultStreamMaxRows),
	}
	if s.maxLimit <= 0 {
		s.maxLimit = MaxLimit
	}
	if s.defaultLimit <= 0 {
		s.defaultLimit = DefaultLimit
	}
	s.defaultLimit = min(s.defaultLimit, s.maxLimit)

	var err error
	if s.duration, err = newDurationHistogram(opts.Registerer); err != nil {
		// Serving matters more than one metric; the histogram still works unregistered.
		s.log.Error("register apigw metrics", "err", err)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(newHostLastSeen(reader, s.log)); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			s.log.Error("register apigw host metrics", "err", err)
		}
	}

	s.router = mux.NewRouter()
	s.Register(s.router)
	s.handler = s.observe(compress(s.router))
	return s
}

// NewHandler builds the API over reader as a plain http.Handler.
func NewHandler(reader ports.TelemetryReader, opts Options) http.Handler {
	return New(reader, opts)
}

// Register adds the API's routes and its JSON 404 and 405 handlers to r.
// Requests reach them without the Server's middleware (request id, gzip,
// access log, metrics) unless r is the Server's own router; serve the
// Server itself to get those.
func (s *Server) Register(r *mux.Router) {
	r.Use(captureRoute)
	// Full paths, not a PathPrefix subrouter: mux answers 404 instead of 405
	// for a method mismatch inside a subrouter.
	r.HandleFunc("/api/v1/gpus", s.listGPUs).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/gpus/{id}/telemetry", s.getTelemetry).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/gpus/{id}/latest", s.getLatest).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/gpus/{id}/series", s.getSeries).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/metrics", s.listMetrics).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/fleet/summary", s.fleetSummary).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/dead-letters", s.listDeadLetters).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/pipeline", s.pipelineStatus).Methods(http.MethodGet)
	s.registerDashboard(r)
	s.registerSwagger(r)
	r.NotFoundHandler = http.HandlerFunc(s.notFound)
	r.MethodNotAllowedHandler = http.HandlerFunc(s.methodNotAllowed(r))
}

// ServeHTTP serves the API through its middleware.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, notFound("no route for %s %s", r.Method, clip(r.URL.Path)))
}

// Mount serves the API, through its middleware (request id, gzip, access
// log, metrics), from an outer router that holds other routes too (the apps'
// health and metrics): everything under /api/ and /swagger, plus the API's
// JSON 404 for unknown paths and JSON 405, with that router's Allow header,
// for a method the outer routes refuse.
func (s *Server) Mount(r *mux.Router) {
	r.PathPrefix("/api/").Handler(s)
	r.PathPrefix("/swagger").Handler(s)
	mountDashboard(r, s)
	r.NotFoundHandler = s
	r.MethodNotAllowedHandler = s.methodNotAllowed(r)
}

// methodNotAllowed answers 405 with the methods the path does allow.
func (s *Server) methodNotAllowed(router *mux.Router) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for _, m := range allMethods {
			probe := r.Clone(r.Context())
			probe.Method = m
			var match mux.RouteMatch
			// With a NotFoundHandler set, Match also "matches" unknown paths.
			if router.Match(probe, &match) && match.MatchErr == nil {
				allowed = append(allowed, m)
			}
		}
		allow := strings.Join(allowed, ", ")
		w.Header().Set("Allow", allow)
		s.writeError(w, r, &apiError{status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed,
			message: "method " + clip(r.Method) + " is not allowed here; allowed: " + allow})
	}
}
