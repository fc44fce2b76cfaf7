package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		values []float64
		p      float64
		want   float64
	}{
		{nil, 50, 0},
		{[]float64{7}, 95, 7},
		{[]float64{1, 2, 3, 4}, 50, 2.5},
		{[]float64{1, 2, 3, 4}, 0, 1},
		{[]float64{1, 2, 3, 4}, 100, 4},
		{[]float64{10, 20, 30, 40, 50}, 95, 48},
	}
	for _, tt := range tests {
		require.InDelta(t, tt.want, domain.Percentile(tt.values, tt.p), 1e-12, "%v p%g", tt.values, tt.p)
	}
}

func TestSeriesRules(t *testing.T) {
	t.Parallel()
	minute := time.Date(2025, 7, 18, 20, 42, 0, 0, time.UTC)
	require.True(t, domain.UsesRollups(minute, 5*time.Minute))
	require.False(t, domain.UsesRollups(minute.Add(time.Second), 5*time.Minute), "start off a minute")
	require.False(t, domain.UsesRollups(minute, 90*time.Second), "step not whole minutes")
	require.False(t, domain.UsesRollups(minute, 30*time.Second))
	require.EqualValues(t, 1, domain.BucketCount(minute, minute, time.Minute))
	require.EqualValues(t, 2, domain.BucketCount(minute, minute.Add(time.Minute), time.Minute), "the end is inclusive")
	require.EqualValues(t, 0, domain.BucketCount(minute, minute.Add(-time.Second), time.Minute))

	var a domain.Agg
	a.Add(3, minute.Add(2*time.Second))
	a.Add(1, minute)
	a.Merge(domain.Agg{})
	b := a.Bucket(minute)
	require.Equal(t, 2, b.Count)
	require.Equal(t, 1.0, *b.Min)
	require.Equal(t, 3.0, *b.Max)
	require.Equal(t, 2.0, *b.Avg)
	require.Equal(t, 3.0, *b.Last, "last follows the newest timestamp, not the insertion order")
	require.Nil(t, domain.Agg{}.Bucket(minute).Min)
}

func TestDCGMField(t *testing.T) {
	t.Parallel()
	f, ok := domain.DCGMField("DCGM_FI_DEV_POWER_USAGE")
	require.True(t, ok)
	require.Equal(t, "W", f.Unit)
	_, ok = domain.DCGMField("DCGM_FI_SOMETHING_NEW")
	require.False(t, ok)
}
