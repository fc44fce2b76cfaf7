package platform

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"
	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/ports"
)

// Check is one readiness check; /readyz runs them all.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// CheckOf is the readiness check of a component that implements
// ports.Checker (every queue and store adapter does).
func CheckOf(name string, c ports.Checker) Check { return Check{Name: name, Fn: c.Check} }

// Drainer is work a component must finish while the app still serves HTTP:
// a queue reader waits for the acks of its outstanding leases, which arrive
// over HTTP. The server runs every drainer when the app stops, before it
// stops taking requests, so no app depends on the order of fx stop hooks.
type Drainer struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Routes registers an app's own handlers on the shared router.
type Routes interface {
	Register(r *mux.Router)
}

// RoutesFunc adapts a function to Routes.
type RoutesFunc func(r *mux.Router)

// Register calls f.
func (f RoutesFunc) Register(r *mux.Router) { f(r) }

// ServerConfig configures the HTTP server.
type ServerConfig struct {
	Addr string
	// ShutdownTimeout bounds the wait for in-flight requests on stop.
	ShutdownTimeout time.Duration
	// Pprof registers net/http/pprof's handlers under /debug/pprof/.
	Pprof bool
	// Limits bound each request: ReadHeaderTimeout and ReadTimeout the time
	// to read its header and its whole body (a slow or stalled upload
	// releases its goroutine), WriteTimeout the time from the end of the
	// header to the end of the answer (0: none; a stream extends its own
	// deadline through http.ResponseController), MaxHeaderBytes its header.
	// Zero fields take the defaults, except WriteTimeout.
	Limits HTTPLimits
}

// Defaults of HTTPLimits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// ServerParams are the server's dependencies.
type ServerParams struct {
	fx.In
	Config   ServerConfig
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Routes   []Routes  `group:"routes"`
	Checks   []Check   `group:"checks"`
	Drainers []Drainer `group:"drainers"`
}

// Server is the app's HTTP server.
type Server struct {
	srv      *http.Server
	listener net.Listener
	logger   *slog.Logger
	checks   []Check
	drainers []Drainer
	// states[i] is checks[i]'s last outcome ("" = passing), so /readyz logs
	// a change once; nil before the first probe. Atomic: probes run
	// concurrently.
	states []atomic.Pointer[string]
	done   chan struct{} // closed when Serve returns
}

// NewServer builds the router: the app's routes plus /healthz, /readyz,
// /metrics and, when Config.Pprof is set, /debug/pprof/.
func NewServer(p ServerParams) *Server {
	r := mux.NewRouter()
	s := &Server{logger: p.Logger, checks: p.Checks, drainers: p.Drainers, done: make(chan struct{})}
	sort.Slice(s.checks, func(i, j int) bool { return s.checks[i].Name < s.checks[j].Name })
	s.states = make([]atomic.Pointer[string], len(s.checks))
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/readyz", s.readyz).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/metrics", promhttp.HandlerFor(p.Registry, promhttp.HandlerOpts{Registry: p.Registry})).Methods(http.MethodGet)
	if p.Config.Pprof {
		registerPprof(r)
	}
	for _, rt := range p.Routes {
		rt.Register(r)
	}
	lim := p.Config.Limits
	s.srv = &http.Server{
		Addr:              p.Config.Addr,
		Handler:           r,
		ReadHeaderTimeout: cmp.Or(lim.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       cmp.Or(lim.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      lim.WriteTimeout,
		MaxHeaderBytes:    cmp.Or(lim.MaxHeaderBytes, DefaultMaxHeaderBytes),
		IdleTimeout:       2 * time.Minute,
	}
	return s
}

// Handler exposes the router (for tests).
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Addr is the bound address once started (useful with ":0").
func (s *Server) Addr() string {
	if s.listener == nil {
		return s.srv.Addr
	}
	return s.listener.Addr().String()
}

// readyz runs every check and answers 503 with each failing check's short
// reason (Reason): the probe is reachable by anyone on the pod network, so
// the full error, which may name hosts and users, goes only to the log, once
// per change of a check's state.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	failing := map[string]string{}
	for i, c := range s.checks {
		err := c.Fn(ctx)
		state := ""
		if err != nil {
			state = Reason(err)
			failing[c.Name] = state
		}
		if prev := s.states[i].Swap(&state); prev == nil || *prev != state {
			switch {
			case err != nil:
				s.logger.Warn("not ready", "check", c.Name, "reason", state, "err", err)
			case prev != nil:
				s.logger.Info("ready again", "check", c.Name)
			}
		}
	}
	if len(failing) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failing": failing})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Reason is the short, safe text /readyz shows for a failing check: the
// Reason of a ports.NotReadyError in err's chain, else a word for the
// sentinel err carries ("timeout", "closed", "unavailable"), else
// "check failed". Never the error text itself, which may hold host names.
func Reason(err error) string {
	if nr, ok := errors.AsType[*ports.NotReadyError](err); ok {
		return nr.Reason
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ports.ErrClosed):
		return "closed"
	case errors.Is(err, ports.ErrUnavailable):
		return "unavailable"
	}
	return "check failed"
}

// registerPprof serves net/http/pprof on r (the package's init registers
// on http.DefaultServeMux, which no app serves). Index also serves the
// named profiles: /debug/pprof/heap, /goroutine, /allocs, /mutex, /block.
func registerPprof(r *mux.Router) {
	r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	r.HandleFunc("/debug/pprof/profile", pprof.Profile)
	r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	r.HandleFunc("/debug/pprof/trace", pprof.Trace)
	r.PathPrefix("/debug/pprof/").HandlerFunc(pprof.Index)
}

// Start binds the address and serves in the background.
func (s *Server) Start() error {
	l, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.srv.Addr, err)
	}
	s.listener = l
	s.logger.Info("http server listening", "addr", l.Addr().String())
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// Stop runs the drainers (all at once, while requests are still served),
// then shuts down gracefully: stops accepting, waits for in-flight requests.
func (s *Server) Stop(ctx context.Context) error {
	var g errgroup.Group
	for _, d := range s.drainers {
		g.Go(func() error {
			s.logger.Info("draining before the HTTP server stops", "component", d.Name)
			if err := d.Fn(ctx); err != nil {
				return fmt.Errorf("drain %s: %w", d.Name, err)
			}
			return nil
		})
	}
	err := errors.Join(g.Wait(), s.srv.Shutdown(ctx))
	if s.listener != nil {
		<-s.done
	}
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// NewRegistry returns the app's metric registry with Go runtime and process
// collectors; it is also provided as a prometheus.Registerer.
func NewRegistry() (*prometheus.Registry, prometheus.Registerer) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, reg
}

// AsRoutes annotates a constructor whose result joins the "routes" group.
func AsRoutes(f any) any {
	return fx.Annotate(f, fx.As(new(Routes)), fx.ResultTags(`group:"routes"`))
}

// AsDrainer annotates a constructor whose result joins the "drainers" group.
func AsDrainer(f any) any {
	return fx.Annotate(f, fx.ResultTags(`group:"drainers"`))
}

// AsCheck annotates a constructor whose result joins the "checks" group.
func AsCheck(f any) any {
	return fx.Annotate(f, fx.ResultTags(`group:"checks"`))
}
