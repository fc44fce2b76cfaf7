package ports

import (
	"context"

	"github.com/gpufleet/telemetry/domain"
)

// Source yields telemetry points to stream.
type Source interface {
	// Next returns the next point, stamped with the time it is emitted
	// (UTC now). A looping source never ends; a finite one returns io.EOF
	// when exhausted. Rows that cannot be parsed are skipped (and counted)
	// by the source, never returned as errors. It returns the context's error
	// when ctx ends.
	Next(ctx context.Context) (domain.Point, error)
}
