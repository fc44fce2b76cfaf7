package promx_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/internal/promx"
)

func TestRegister(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := promx.Counter("x_total", "X.")
	v := promx.CounterVec("y_total", "Y.", "reason")
	promx.Zero(v, "a", "b")
	require.NoError(t, promx.Register(reg,
		c, v, promx.Gauge("g", "G."), promx.GaugeVec("gv", "GV.", "target"),
		promx.GaugeFunc("gf", "GF.", func() float64 { return 2 }),
		promx.Histogram("h_seconds", "H.", prometheus.LinearBuckets(1, 1, 3))))
	require.Equal(t, 2, testutil.CollectAndCount(v), "the zeroed values are exported")
	require.Equal(t, 2.0, testutil.ToFloat64(promx.GaugeFunc("gf", "GF.", func() float64 { return 2 })))

	err := promx.Register(reg, promx.Counter("z_total", "Z."), promx.Counter("x_total", "X."))
	var are prometheus.AlreadyRegisteredError
	require.ErrorAs(t, err, &are, "a clash is reported, wrapped")
	require.ErrorContains(t, err, "register metrics")
	require.Equal(t, 1, testutil.CollectAndCount(reg, "z_total"), "the others are still registered")

	require.NoError(t, promx.Register(nil, promx.Counter("x_total", "X.")), "nil registers nothing")
}

func TestReuse(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	first, err := promx.Reuse(reg, promx.CounterVec("r_total", "R.", "reason"))
	require.NoError(t, err)
	second, err := promx.Reuse(reg, promx.CounterVec("r_total", "R.", "reason"))
	require.NoError(t, err)
	require.Same(t, first, second, "an equal collector already registered is reused")

	other := promx.CounterVec("r_total", "Other help.", "reason")
	got, err := promx.Reuse(reg, other)
	require.ErrorContains(t, err, "register metrics", "a different collector of the same name is refused")
	require.Same(t, other, got, "still usable, unregistered")

	own := promx.Counter("n_total", "N.")
	got2, err := promx.Reuse[prometheus.Counter](nil, own)
	require.NoError(t, err)
	require.Same(t, own, got2)
}
