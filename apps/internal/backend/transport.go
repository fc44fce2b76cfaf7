package backend

import "github.com/gpufleet/telemetry/apps/internal/platform"

// Streamer transports (STREAMER_TRANSPORT).
const (
	// TransportStream pipelines one message per frame on a long-lived
	// connection (mqhttp's streaming publish path), up to STREAMER_WINDOW
	// unacknowledged: the default.
	TransportStream = "stream"
	// TransportRequest is the request-per-publish path (STREAMER_SENDERS,
	// STREAMER_BATCH, STREAMER_QUEUE_SIZE).
	TransportRequest = "request"
)

// DefaultStreamerWindow is STREAMER_WINDOW's default.
const DefaultStreamerWindow = 1024

// StreamerTransport reads STREAMER_TRANSPORT and STREAMER_WINDOW. window is
// 0 for the request transport.
func StreamerTransport(env *platform.Env) (transport string, window int) {
	transport = env.OneOf("STREAMER_TRANSPORT", TransportStream, TransportStream, TransportRequest)
	window = env.Int("STREAMER_WINDOW", DefaultStreamerWindow, 1, 65_536)
	if transport != TransportStream {
		return transport, 0
	}
	return transport, window
}
