package promxtest_test

import (
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/internal/promx"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
)

// recorder is t noting a failure instead of failing the test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) FailNow()              { r.failed = true; runtime.Goexit() }

func lint(t *testing.T, reg prometheus.Gatherer, names ...string) (failed bool) {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		promxtest.RequireLintClean(r, reg, names...)
	}()
	<-done
	return r.failed
}

func TestRequireLintClean(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	require.NoError(t, promx.Register(reg,
		promx.Counter("good_events_total", "Events."),
		promx.Counter("bad_events", "A counter without the _total suffix.")))
	require.True(t, lint(t, reg), "a counter without _total passed promlint")
	require.True(t, lint(t, reg, "bad_events"))
	require.False(t, lint(t, reg, "good_events_total"), "only the named metric is linted")
}
