package platform

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.uber.org/dig"
	"go.uber.org/fx"
)

// Common is the configuration every app reads.
type Common struct {
	App      string
	LogLevel string
	HTTPAddr string
	// Pprof serves net/http/pprof under /debug/pprof/ (PPROF=true), for
	// profiling a running app (make bench -pprof). Off by default: profiles
	// expose internals and a CPU profile costs CPU while it runs.
	Pprof bool
	// Limits bound every request the app's HTTP server reads and writes.
	Limits HTTPLimits
}

// HTTPLimits are the HTTP server's timeouts and header bound; see
// ServerConfig.
type HTTPLimits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	MaxHeaderBytes    int
}

// LoadCommon reads LOG_LEVEL, HTTP_ADDR (default defAddr), PPROF and the
// HTTP server's limits: HTTP_READ_HEADER_TIMEOUT_MS (10 s),
// HTTP_READ_TIMEOUT_MS (30 s), HTTP_WRITE_TIMEOUT_MS (60 s; 0 = none, the
// default with PPROF=true, since a CPU profile must be shorter than the
// write timeout) and HTTP_MAX_HEADER_BYTES (64 KiB).
func LoadCommon(env *Env, app, defAddr string) Common {
	pprof := env.Bool("PPROF", false)
	defWrite := DefaultWriteTimeout
	if pprof {
		defWrite = 0
	}
	return Common{
		App:      app,
		LogLevel: env.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		HTTPAddr: env.String("HTTP_ADDR", defAddr),
		Pprof:    pprof,
		Limits: HTTPLimits{
			ReadHeaderTimeout: env.Millis("HTTP_READ_HEADER_TIMEOUT_MS", DefaultReadHeaderTimeout, 100, 600_000),
			ReadTimeout:       env.Millis("HTTP_READ_TIMEOUT_MS", DefaultReadTimeout, 100, 3_600_000),
			WriteTimeout:      env.Millis("HTTP_WRITE_TIMEOUT_MS", defWrite, 0, 3_600_000),
			MaxHeaderBytes:    env.Int("HTTP_MAX_HEADER_BYTES", DefaultMaxHeaderBytes, 4096, 1<<20),
		},
	}
}

// Module provides the logger, the metrics registry and the HTTP server, and
// starts and stops the server with the app. Components that must drain while
// the server still serves (mqreader's reader) join the "drainers" group
// (AsDrainer); the server runs them first when it stops.
func Module(c Common) fx.Option {
	return fx.Options(
		fx.Supply(ServerConfig{Addr: c.HTTPAddr, ShutdownTimeout: 10 * time.Second, Pprof: c.Pprof, Limits: c.Limits}),
		fx.Provide(
			func() *slog.Logger { return NewLogger(c.App, c.LogLevel) },
			NewRegistry,
			NewServer,
		),
		fxLogger(),
		fx.Invoke(func(lc fx.Lifecycle, s *Server) {
			lc.Append(fx.Hook{
				OnStart: func(context.Context) error { return s.Start() },
				OnStop:  s.Stop,
			})
		}),
	)
}

// StopTimeout is how long an app may take to stop: long enough for a reader
// to drain its leases.
const StopTimeout = 45 * time.Second

// Main is every app's main: it builds the app's options from the
// environment, exits with status 2 and every configuration problem (each
// naming its variable) when the environment is wrong, and otherwise runs the
// app until SIGINT/SIGTERM, then stops it gracefully. When the app cannot be
// built or started, the last line on stderr is the one error that says why
// (a constructor's or a start hook's own error, without fx's chain of
// "could not build arguments for …"), so a failed start reads plainly after
// whatever was logged before it.
func Main(build func(env *Env) fx.Option) {
	env := NewEnv()
	opts := build(env)
	if err := env.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	app := fx.New(opts, fx.StopTimeout(StopTimeout))
	if err := app.Err(); err != nil {
		fmt.Fprintln(os.Stderr, StartError(err))
		os.Exit(1)
	}
	startCtx, cancel := context.WithTimeout(context.Background(), app.StartTimeout())
	err := app.Start(startCtx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, StartError(err))
		os.Exit(1)
	}
	sig := <-app.Wait()
	stopCtx, cancel := context.WithTimeout(context.Background(), app.StopTimeout())
	err = app.Stop(stopCtx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stop:", err)
		os.Exit(1)
	}
	os.Exit(sig.ExitCode)
}

// StartError is the one line that says why an app did not start: "start: "
// and the error its constructor or start hook returned (dig.RootCause), on a
// single line. The lines of a joined error (errors.Join: every missing
// column, every bad variable) are kept apart by "; ".
func StartError(err error) string {
	var parts []string
	for line := range strings.Lines(dig.RootCause(err).Error()) {
		if f := strings.Fields(line); len(f) > 0 {
			parts = append(parts, strings.Join(f, " "))
		}
	}
	return "start: " + strings.Join(parts, "; ")
}
