package domain_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
)

func TestIsBlankAndCleanValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v     float64
		blank bool
	}{
		{9.223372036854775e18, true},
		{-9.223372036854775e18, true},
		{9.223372036854775807e18, true},
		{4294967295, true},
		{math.NaN(), true},
		{math.Inf(1), true},
		{math.Inf(-1), true},
		{1 << 47, true},
		{1<<47 + 15, true},
		{2147483632, true},
		{2147483647, true},
		{0, false},
		{100, false},
		{1980.5, false},
		{4294967294, false},
		{-40, false},
		{2147483631, false},
		{2147483632.5, false},
		{1<<47 + 16, false},
		{81559, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.v), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.blank, domain.IsBlank(tt.v))
			got := domain.CleanValue(tt.v)
			if tt.blank {
				require.Nil(t, got)
				return
			}
			require.NotNil(t, got)
			require.Equal(t, tt.v, *got)
		})
	}
}

func TestPointValidate(t *testing.T) {
	t.Parallel()
	valid := domain.Point{
		Timestamp: time.Date(2025, 7, 18, 20, 42, 34, 0, time.UTC), MetricName: "DCGM_FI_DEV_GPU_UTIL",
		GPUIndex: 0, GPUUUID: "GPU-5fd4f087-86f3-7a43-b711-4771313afc50", Value: domain.CleanValue(42),
	}
	runPointCases(t, valid, []pointCase{
		{name: "valid", change: func(*domain.Point) {}},
		{name: "nil value", change: func(p *domain.Point) { p.Value = nil }},
		{name: "zero value", change: func(p *domain.Point) { v := 0.0; p.Value = &v }},
		{name: "index 7", change: func(p *domain.Point) { p.GPUIndex = 7 }},
		{name: "no uuid", change: func(p *domain.Point) { p.GPUUUID = "" }, want: "gpu_uuid is empty"},
		{name: "no metric", change: func(p *domain.Point) { p.MetricName = "" }, want: "metric_name is empty"},
		{name: "no timestamp", change: func(p *domain.Point) { p.Timestamp = time.Time{} }, want: "timestamp is missing"},
		{name: "negative index", change: func(p *domain.Point) { p.GPUIndex = -1 }, want: "gpu_index is negative"},
		{name: "blank sentinel", change: func(p *domain.Point) { v := 4294967295.0; p.Value = &v }, want: "blank sentinel"},
		{name: "NaN", change: func(p *domain.Point) { v := math.NaN(); p.Value = &v }, want: "blank sentinel"},
	})
}

// pointCase is a change to a valid point and the error Validate then
// reports.
type pointCase struct {
	name   string
	change func(p *domain.Point)
	want   string // empty when still valid
}

// runPointCases runs Validate, in parallel subtests, on valid changed by
// each case: no error where want is empty, else domain.ErrInvalidPoint with
// want in its text.
func runPointCases(t *testing.T, valid domain.Point, tests []pointCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := valid
			tt.change(&p)
			err := p.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, domain.ErrInvalidPoint)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestGPUOf(t *testing.T) {
	t.Parallel()
	ts := time.Date(2025, 7, 18, 20, 42, 34, 0, time.UTC)
	p := domain.Point{Timestamp: ts, MetricName: "m", GPUIndex: 3, Device: "nvidia3", GPUUUID: "GPU-1",
		ModelName: "H100", Hostname: "h", Container: "c", Pod: "p", Namespace: "n"}
	require.Equal(t, domain.GPU{UUID: "GPU-1", Hostname: "h", GPUIndex: 3, Device: "nvidia3", ModelName: "H100", LastSeen: ts},
		domain.GPUOf(p))
}

func TestFormatLabels(t *testing.T) {
	t.Parallel()
	require.Equal(t, `Hostname="h",UUID="GPU-1",odd="a\"b\\c\nd"`,
		domain.FormatLabels([][2]string{{"Hostname", "h"}, {"UUID", "GPU-1"}, {"odd", "a\"b\\c\nd"}}))
	require.Empty(t, domain.FormatLabels(nil))
}
