package mqhttp

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gpufleet/telemetry/ports"
)

// Publish sends msgs to the writer in one request. See the package doc for
// why retries are safe only with idempotency keys.
func (c *Client) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	switch {
	case c.closed():
		return ports.PublishResult{}, fmt.Errorf("publish: %w", ports.ErrClosed)
	case c.writer == "":
		return ports.PublishResult{}, fmt.Errorf("publish: %w: no writer URL configured", ports.ErrInvalidArgument)
	case len(msgs) > MaxPublishMessages:
		return ports.PublishResult{}, fmt.Errorf("publish: %w: %d messages exceed the protocol's %d per request",
			ports.ErrInvalidArgument, len(msgs), MaxPublishMessages)
	}
	if c.stream != nil {
		return c.publishOverStream(ctx, topic, msgs)
	}
	req := publishRequest{Topic: topic, Messages: make([]publishMessage, len(msgs))}
	for i, m := range msgs {
		req.Messages[i] = publishMessage(m)
	}
	// Encoding checks every payload (a json.RawMessage is compacted); only
	// when it fails is each one checked again, to name the culprit.
	body, err := json.Marshal(req)
	if err != nil {
		for i, m := range msgs {
			if !json.Valid(m.Payload) {
				return ports.PublishResult{}, fmt.Errorf("publish: %w: message %d: payload is not valid JSON", ports.ErrInvalidArgument, i)
			}
		}
		return ports.PublishResult{}, fmt.Errorf("publish: %w: encode request: %w", ports.ErrInvalidArgument, err)
	}
	var resp publishResponse
	if err := c.callBody(ctx, "publish", c.writer+PathPublish, body, &resp); err != nil {
		return ports.PublishResult{}, err
	}
	return ports.PublishResult(resp), nil
}
