package kube

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"k8s.io/client-go/kubernetes"

	"github.com/gpufleet/telemetry/internal/startstop"
)

// Options are what an app supplies to Module besides Config and ClientConfig.
type Options struct {
	// Elect runs the controller under leader election (RunElected); false
	// runs it unconditionally (Run), for a single replica.
	Elect    bool
	Election ElectionConfig
}

// Params are Module's inputs.
type Params struct {
	fx.In

	Lifecycle  fx.Lifecycle
	Client     kubernetes.Interface
	Config     Config
	Options    Options
	Logger     *slog.Logger          `optional:"true"`
	Registerer prometheus.Registerer `optional:"true"`
}

// NewFromParams builds the Controller and ties its run to the app's
// lifecycle: started on OnStart with a context the controller owns (not the
// start context, which times out), stopped and waited for on OnStop.
func NewFromParams(p Params) (*Controller, error) {
	c, err := New(p.Client, p.Config, p.Logger, p.Registerer)
	if err != nil {
		return nil, err
	}
	start, stop := startstop.Hooks("partition controller", func(ctx context.Context) {
		var err error
		if p.Options.Elect {
			err = c.RunElected(ctx, p.Options.Election)
		} else {
			err = c.Run(ctx)
		}
		if err != nil {
			c.logger.Error("partition controller stopped", "err", err)
		}
	})
	p.Lifecycle.Append(fx.Hook{OnStart: start, OnStop: stop})
	return c, nil
}

// Module provides a kubernetes.Interface built from the ClientConfig the app
// supplies (tests replace it with a fake clientset: fx.Replace) and the
// *Controller, running for the app's lifetime, from its Config and Options.
var Module = fx.Module("kube",
	fx.Provide(NewClientset, NewFromParams),
)
