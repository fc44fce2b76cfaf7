package mqhttp

import (
	"context"

	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/ports"
)

// Module provides the queue client for apps that reach the queue over HTTP
// (streamer, collector): a *Client built from a ClientConfig the app
// supplies, bound to ports.Queue, ports.Publisher and ports.Consumer, and
// closed on stop. The Server is not in the module: mqwriter and mqreader
// already provide ports.Publisher/ports.Consumer from their storage backend
// and mount NewServer's routes on their own router, and a module that also
// provided the client's ports would collide with those.
var Module = fx.Module("mqhttp",
	fx.Provide(fx.Annotate(NewClient,
		fx.OnStop(func(_ context.Context, c *Client) error { return c.Close() }),
		fx.As(fx.Self()),
		fx.As(new(ports.Queue)),
		fx.As(new(ports.Publisher)),
		fx.As(new(ports.Consumer)),
	)),
)
