package ports

import (
	"context"

	"github.com/gpufleet/telemetry/domain"
)

// Source yields telemetry points to stream.
type Source interface {
	// Next returns the next point, stamped with the time it is emitted
	// (UTC now) by a replaying source (the CSV), or with the time of the
	// scrape (or the sample's own timestamp) by a live one; Next blocks
	// until a point is ready or ctx ends. A looping source never ends; a
	// finite one returns io.EOF when exhausted. Rows or samples that cannot
	// be parsed are skipped (and counted) by the source, never returned as
	// errors. It returns the context's error when ctx ends, and an error
	// wrapping ErrClosed from a source that was stopped.
	Next(ctx context.Context) (domain.Point, error)
}
