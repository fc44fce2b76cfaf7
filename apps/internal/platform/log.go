package platform

import (
	"log/slog"
	"os"
	"strings"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
)

// NewLogger returns a JSON logger on stderr at LOG_LEVEL (debug, info, warn,
// error; default info), tagged with the app's name.
func NewLogger(app string, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})).With("app", app)
}

// fxLogger routes fx's own events through the app's logger at debug level,
// so start-up noise stays out of production logs but errors still show.
func fxLogger() fx.Option {
	return fx.WithLogger(func(l *slog.Logger) fxevent.Logger {
		sl := &fxevent.SlogLogger{Logger: l}
		sl.UseLogLevel(slog.LevelDebug)
		sl.UseErrorLevel(slog.LevelError)
		return sl
	})
}
