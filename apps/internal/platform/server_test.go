package platform_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/ports"
)

var quiet = slog.New(slog.DiscardHandler)

func check(name string, err error) platform.Check {
	return platform.Check{Name: name, Fn: func(ctx context.Context) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}}
}

func newServer(t *testing.T, checks ...platform.Check) (*platform.Server, *prometheus.Registry) {
	t.Helper()
	return newServerWith(platform.ServerParams{Checks: checks, Routes: []platform.Routes{answer("/v1/hello", "hello")}})
}

// newServerWith builds a server from p on a free loopback port (unless
// p.Config says where), with a fresh registry and a quiet logger.
func newServerWith(p platform.ServerParams) (*platform.Server, *prometheus.Registry) {
	reg, _ := platform.NewRegistry()
	if p.Config.Addr == "" {
		p.Config.Addr = "127.0.0.1:0"
	}
	p.Logger, p.Registry = quiet, reg
	return platform.NewServer(p), reg
}

// answer is a route that answers GET path with body.
func answer(path, body string) platform.Routes {
	return platform.RoutesFunc(func(r *mux.Router) {
		r.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) })
	})
}

func serve(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, path, nil))
	return rec
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	// A failing dependency does not make the process unhealthy.
	s, _ := newServer(t, check("database", errors.New("connection refused")))
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := serve(t, s.Handler(), method, "/healthz")
		require.Equal(t, http.StatusOK, rec.Code, method)
	}
	rec := serve(t, s.Handler(), http.MethodGet, "/healthz")
	require.JSONEq(t, `{"status":"ok"}`, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		checks      []platform.Check
		wantStatus  int
		wantFailing map[string]string
	}{
		{name: "no checks", wantStatus: http.StatusOK},
		{name: "all pass", checks: []platform.Check{check("database", nil), check("queue", nil)}, wantStatus: http.StatusOK},
		{name: "one fails", checks: []platform.Check{check("database", nil), check("queue", errors.New("dial tcp 10.0.0.7:8081: connection refused"))},
			wantStatus: http.StatusServiceUnavailable, wantFailing: map[string]string{"queue": "check failed"}},
		{name: "all fail", checks: []platform.Check{
			check("reader", &ports.NotReadyError{Reason: "no partition range assigned", Err: ports.ErrUnavailable}),
			check("database", fmt.Errorf("ping: %w", context.DeadlineExceeded))},
			wantStatus:  http.StatusServiceUnavailable,
			wantFailing: map[string]string{"reader": "no partition range assigned", "database": "timeout"}},
		{name: "never a host or user", checks: []platform.Check{
			check("database", &ports.NotReadyError{Reason: "database unreachable",
				Err: fmt.Errorf("%w: failed to connect to `user=telemetry database=telemetry`: db-rw.prod.svc:5432", ports.ErrUnavailable)}),
			check("queue", fmt.Errorf("writer http://mqwriter.prod.svc:8081: %w", ports.ErrUnavailable)),
			check("writer", fmt.Errorf("closing: %w", ports.ErrClosed))},
			wantStatus:  http.StatusServiceUnavailable,
			wantFailing: map[string]string{"database": "database unreachable", "queue": "unavailable", "writer": "closed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newServer(t, tt.checks...)
			rec := serve(t, s.Handler(), http.MethodGet, "/readyz")
			require.Equal(t, tt.wantStatus, rec.Code)
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			var body struct {
				Status  string            `json:"status"`
				Failing map[string]string `json:"failing"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			if tt.wantStatus == http.StatusOK {
				require.Equal(t, "ready", body.Status)
				require.Empty(t, body.Failing)
				return
			}
			require.Equal(t, "not ready", body.Status)
			require.Equal(t, tt.wantFailing, body.Failing)
			require.NotContains(t, rec.Body.String(), "svc")
			require.NotContains(t, rec.Body.String(), "user=")
		})
	}
}

func TestReadyzChecksHaveADeadline(t *testing.T) {
	t.Parallel()
	sawDeadline := make(chan bool, 1) // 1: the check never waits for the test
	s, _ := newServer(t, platform.Check{Name: "slow", Fn: func(ctx context.Context) error {
		_, ok := ctx.Deadline()
		sawDeadline <- ok
		return nil
	}})
	rec := serve(t, s.Handler(), http.MethodGet, "/readyz")
	require.Equal(t, http.StatusOK, rec.Code)
	require.True(t, <-sawDeadline, "a hung dependency cannot hang /readyz")
}

func TestMetricsServesTheRegistry(t *testing.T) {
	t.Parallel()
	s, reg := newServer(t)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "platform_test_events_total", Help: "Events."})
	reg.MustRegister(c)
	c.Add(3)
	rec := serve(t, s.Handler(), http.MethodGet, "/metrics")
	require.Equal(t, http.StatusOK, rec.Code)
	body := rec.Body.String()
	require.Contains(t, body, "platform_test_events_total 3")
	require.Contains(t, body, "go_goroutines ", "the Go runtime collector is registered")
	require.Contains(t, body, "process_cpu_seconds_total ", "the process collector is registered")
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestAppRoutes(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t)
	rec := serve(t, s.Handler(), http.MethodGet, "/v1/hello")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "hello", rec.Body.String())
	require.Equal(t, http.StatusNotFound, serve(t, s.Handler(), http.MethodGet, "/nope").Code)
	require.Equal(t, http.StatusMethodNotAllowed, serve(t, s.Handler(), http.MethodPost, "/healthz").Code)
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	s, _ := newServer(t, check("database", nil))
	require.Equal(t, "127.0.0.1:0", s.Addr(), "before Start, the configured address")
	require.NoError(t, s.Start())
	addr := s.Addr()
	require.NotEqual(t, "127.0.0.1:0", addr, "after Start, the bound address")
	require.True(t, strings.HasPrefix(addr, "127.0.0.1:"))

	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/hello"} {
		code, _ := apptest.Fetch(t, http.MethodGet, "http://"+addr+path, "")
		require.Equal(t, http.StatusOK, code, path)
	}

	require.NoError(t, s.Stop(t.Context()))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/healthz", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	require.Error(t, err, "the listener is closed")
}

func TestStartFailsOnABusyAddress(t *testing.T) {
	t.Parallel()
	a, _ := newServer(t)
	require.NoError(t, a.Start())
	t.Cleanup(func() { require.NoError(t, a.Stop(context.Background())) })
	reg, _ := platform.NewRegistry()
	b := platform.NewServer(platform.ServerParams{Config: platform.ServerConfig{Addr: a.Addr()}, Logger: quiet, Registry: reg})
	require.ErrorContains(t, b.Start(), "listen "+a.Addr())
	require.NoError(t, b.Stop(t.Context()), "stopping a server that never started is harmless")
}

func TestModule(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "error"})
	common := platform.LoadCommon(env, "platformtest", ":0")
	require.NoError(t, env.Err())
	var srv *platform.Server
	var reg prometheus.Registerer
	var registry *prometheus.Registry
	app := fxtest.New(t,
		platform.Module(common),
		fx.Provide(
			platform.AsRoutes(func() platform.Routes {
				return platform.RoutesFunc(func(r *mux.Router) {
					r.HandleFunc("/v1/app", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
				})
			}),
			platform.AsCheck(func() platform.Check { return check("queue", errors.New("queue down")) }),
		),
		fx.Populate(&srv, &reg, &registry),
	)
	app.RequireStart()
	require.Same(t, registry, reg.(*prometheus.Registry), "the Registerer is the served registry")
	base := "http://" + srv.Addr()
	code, _ := apptest.Fetch(t, http.MethodGet, base+"/v1/app", "")
	require.Equal(t, http.StatusTeapot, code, "the app's routes are mounted")
	code, body := apptest.Fetch(t, http.MethodGet, base+"/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, `"queue":"check failed"`, "the app's checks run")
	require.NotContains(t, body, "queue down", "only a short reason, never the error text")
	app.RequireStop()
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level   string
		enabled slog.Level
		off     slog.Level
	}{
		{"debug", slog.LevelDebug, slog.LevelDebug - 1},
		{"info", slog.LevelInfo, slog.LevelDebug},
		{"", slog.LevelInfo, slog.LevelDebug},
		{"bogus", slog.LevelInfo, slog.LevelDebug},
		{"WARN", slog.LevelWarn, slog.LevelInfo},
		{"warning", slog.LevelWarn, slog.LevelInfo},
		{"error", slog.LevelError, slog.LevelWarn},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			t.Parallel()
			l := platform.NewLogger("app", tt.level)
			require.True(t, l.Enabled(t.Context(), tt.enabled))
			require.False(t, l.Enabled(t.Context(), tt.off))
		})
	}
}

// The server's limits hold: a header over MaxHeaderBytes is refused (431),
// and a client that sends a header and then stalls its body loses the
// connection after ReadTimeout instead of holding a goroutine for ever.
func TestServerLimits(t *testing.T) {
	t.Parallel()
	bodyErr := make(chan error, 1)
	s, _ := newServerWith(platform.ServerParams{
		Config: platform.ServerConfig{Limits: platform.HTTPLimits{ReadTimeout: 300 * time.Millisecond, MaxHeaderBytes: 4096}},
		Routes: []platform.Routes{platform.RoutesFunc(func(r *mux.Router) {
			r.HandleFunc("/v1/upload", func(_ http.ResponseWriter, r *http.Request) {
				_, err := io.ReadAll(r.Body)
				bodyErr <- err
			})
		})},
	})
	require.NoError(t, s.Start())
	t.Cleanup(func() { require.NoError(t, s.Stop(context.Background())) })

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+s.Addr()+"/healthz", nil)
	require.NoError(t, err)
	req.Header.Set("X-Big", strings.Repeat("h", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)

	conn, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npart of the body")
	require.NoError(t, err)
	require.Error(t, <-bodyErr, "the stalled body read ends with the read timeout")
}

// A failed start names the constructor's own error on one line, not fx's
// chain of "could not build arguments for …".
func TestStartError(t *testing.T) {
	t.Parallel()
	type source struct{}
	app := fx.New(fx.NopLogger,
		fx.Provide(func() (*source, error) {
			return nil, errors.New("csv source a.csv: missing required column \"metric_name\"")
		}),
		fx.Invoke(func(*source) {}),
	)
	require.Error(t, app.Err())
	require.NotContains(t, platform.StartError(app.Err()), "could not build")
	require.Equal(t, `start: csv source a.csv: missing required column "metric_name"`, platform.StartError(app.Err()))

	joined := fx.New(fx.NopLogger,
		fx.Provide(func() (*source, error) {
			return nil, fmt.Errorf("csv source a.csv: %w", errors.Join(
				errors.New(`missing required column "uuid"`), errors.New("missing required column \"value\"\n\tat  the end")))
		}),
		fx.Invoke(func(*source) {}),
	)
	require.Equal(t, `start: csv source a.csv: missing required column "uuid"; missing required column "value"; at the end`,
		platform.StartError(joined.Err()), "each line of a joined error stays apart, its own spaces folded")
}
