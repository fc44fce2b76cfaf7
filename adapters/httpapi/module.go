package httpapi

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/ports"
)

// Module provides the API as a *Server (an http.Handler) for the apigw app
// to serve. It needs a ports.TelemetryReader; Options, a *slog.Logger and a
// prometheus.Registerer are optional (the latter two fill Options' nil fields).
var Module = fx.Module("httpapi", fx.Provide(newFromParams))

// Params are the Server's fx dependencies.
type Params struct {
	fx.In

	Reader     ports.TelemetryReader
	Options    Options               `optional:"true"`
	Logger     *slog.Logger          `optional:"true"`
	Registerer prometheus.Registerer `optional:"true"`
}

func newFromParams(p Params) *Server {
	opts := p.Options
	if opts.Logger == nil {
		opts.Logger = p.Logger
	}
	if opts.Registerer == nil {
		opts.Registerer = p.Registerer
	}
	return New(p.Reader, opts)
}
