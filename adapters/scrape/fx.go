package scrape

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/ports"
)

// Config is what an app supplies to Module. Exactly one source of targets:
// Targets, TargetsFile, or a Discoverer the app provides (Kubernetes).
type Config struct {
	// Targets are target URLs (ParseTargets' output).
	Targets []string
	// TargetsFile is a file of targets, re-read every FileRefresh.
	TargetsFile string
	FileRefresh time.Duration
	// Interval, Timeout, MaxBodyBytes and Buffer: see Options.
	Interval     time.Duration
	Timeout      time.Duration
	MaxBodyBytes int64
	Buffer       int
}

// Params are Module's inputs. A Discoverer, when the app provides one, is
// the source of targets (Config then names none).
type Params struct {
	fx.In

	Lifecycle  fx.Lifecycle
	Config     Config
	Discoverer Discoverer            `optional:"true"`
	Logger     *slog.Logger          `optional:"true"`
	Registerer prometheus.Registerer `optional:"true"`
}

// NewFromParams builds the Source and ties it to the app's lifecycle:
// started on OnStart, stopped and waited for on OnStop.
func NewFromParams(p Params) (*Source, error) {
	var discoverers []Discoverer
	if len(p.Config.Targets) > 0 {
		discoverers = append(discoverers, Static(p.Config.Targets))
	}
	if p.Config.TargetsFile != "" {
		discoverers = append(discoverers, File{Path: p.Config.TargetsFile, Refresh: p.Config.FileRefresh, Logger: p.Logger})
	}
	if p.Discoverer != nil {
		discoverers = append(discoverers, p.Discoverer)
	}
	switch len(discoverers) {
	case 0:
		return nil, errors.New("scrape source: no targets: give a list, a file or a discoverer")
	case 1:
	default:
		return nil, errors.New("scrape source: more than one source of targets: give a list, a file or a discoverer, not several")
	}
	s, err := New(Options{
		Targets: discoverers[0], Interval: p.Config.Interval, Timeout: p.Config.Timeout,
		MaxBodyBytes: p.Config.MaxBodyBytes, Buffer: p.Config.Buffer,
		Logger: p.Logger, Registerer: p.Registerer,
	})
	if err != nil {
		return nil, err
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error { s.Start(); return nil },
		OnStop:  s.Stop,
	})
	return s, nil
}

// Module provides the scrape source as ports.Source (and as *Source), running
// for the app's lifetime, from a Config the app supplies.
var Module = fx.Module("scrape",
	fx.Provide(fx.Annotate(NewFromParams, fx.As(new(ports.Source)), fx.As(fx.Self()))),
)
