package ports_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/ports"
)

func TestTelemetryQueryValidate(t *testing.T) {
	t.Parallel()
	start := time.Unix(100, 0)
	good := ports.TelemetryQuery{GPUUUID: "GPU-1", Start: start, End: start, Limit: 1}
	require.NoError(t, good.Validate(true))
	noLimit := good
	noLimit.Limit = 0
	require.NoError(t, noLimit.Validate(false), "a stream ignores Limit")
	for name, mutate := range map[string]func(*ports.TelemetryQuery){
		"no gpu":           func(q *ports.TelemetryQuery) { q.GPUUUID = "" },
		"limit 0":          func(q *ports.TelemetryQuery) { q.Limit = 0 },
		"end before start": func(q *ports.TelemetryQuery) { q.End = start.Add(-time.Microsecond) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := good
			mutate(&q)
			require.ErrorIs(t, q.Validate(true), ports.ErrInvalidArgument)
		})
	}
}
