package csv

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/ports"
)

// Config is what an app supplies to Module.
type Config struct {
	// Path is the DCGM CSV file to stream.
	Path string
	// Once stops after one pass (Next returns io.EOF) instead of looping.
	Once bool
}

// Params are Module's inputs; a Logger and a Registerer are used when the
// app provides them.
type Params struct {
	fx.In

	Config     Config
	Logger     *slog.Logger          `optional:"true"`
	Registerer prometheus.Registerer `optional:"true"`
}

// NewFromParams builds a Source from Module's inputs.
func NewFromParams(p Params) (*Source, error) {
	return New(p.Config.Path, Options{Once: p.Config.Once, Logger: p.Logger, Registerer: p.Registerer})
}

// Module provides the CSV source as ports.Source (and as *Source, for its
// Rows and Skipped) from a Config the app supplies.
var Module = fx.Module("csv",
	fx.Provide(fx.Annotate(NewFromParams, fx.As(new(ports.Source)), fx.As(fx.Self()))),
)
