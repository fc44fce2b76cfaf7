// Package promxtest holds the one check every test of a component's metrics
// ends with: the series it registers pass promlint (the naming, unit and
// help rules Prometheus states).
package promxtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// RequireLintClean gathers g (only the metrics named, when any are) and
// fails t on any problem promlint finds.
func RequireLintClean(t testing.TB, g prometheus.Gatherer, names ...string) {
	t.Helper()
	problems, err := testutil.GatherAndLint(g, names...)
	require.NoError(t, err)
	require.Empty(t, problems, "promlint")
}
