package httpapi

import (
	"time"

	"github.com/gpufleet/telemetry/domain"
)

// MetricInfo is one metric name the store has seen.
type MetricInfo struct {
	// Name is the DCGM field name as exported.
	Name string `json:"name" example:"DCGM_FI_DEV_GPU_TEMP"`
	// GPUs is how many GPUs reported it.
	GPUs int `json:"gpus" example:"247"`
	// Unit is the field's unit when we know the field, else empty.
	Unit string `json:"unit" example:"°C"`
	// Description says what the field measures, when we know it.
	Description string `json:"description" example:"GPU temperature"`
}

// MetricList is the body of GET /api/v1/metrics.
type MetricList struct {
	// Metrics are ordered by name; empty (never null) before any telemetry.
	Metrics []MetricInfo `json:"metrics"`
}

// LatestEntry is a GPU's newest sample of one metric.
type LatestEntry struct {
	MetricName string `json:"metric_name" example:"DCGM_FI_DEV_GPU_TEMP"`
	// Timestamp is when the sample was taken (RFC 3339, UTC).
	Timestamp time.Time `json:"timestamp" format:"date-time" example:"2025-07-18T20:42:34Z"`
	// Value is null when the newest sample was blank.
	Value *float64 `json:"value" extensions:"x-nullable" example:"41"`
	Unit  string   `json:"unit" example:"°C"`
}

// LatestValues is the body of GET /api/v1/gpus/{id}/latest.
type LatestValues struct {
	GPUID string `json:"gpu_id" example:"GPU-5fd4f087-86f3-7a43-b711-4771313afc50"`
	// Metrics are ordered by name.
	Metrics []LatestEntry `json:"metrics"`
}

// SeriesBucket aggregates the non-null samples of one step. Min, max, avg
// and last are null when count is 0 (an empty bucket).
type SeriesBucket struct {
	// Start is the bucket's first instant; the bucket ends one step later.
	Start time.Time `json:"start" format:"date-time" example:"2025-07-18T20:00:00Z"`
	Count int       `json:"count" example:"2"`
	Min   *float64  `json:"min" extensions:"x-nullable" example:"40"`
	Max   *float64  `json:"max" extensions:"x-nullable" example:"42"`
	Avg   *float64  `json:"avg" extensions:"x-nullable" example:"41"`
	// Last is the newest non-null value of the bucket.
	Last *float64 `json:"last" extensions:"x-nullable" example:"42"`
}

// Series is the body of GET /api/v1/gpus/{id}/series.
type Series struct {
	GPUID      string    `json:"gpu_id" example:"GPU-5fd4f087-86f3-7a43-b711-4771313afc50"`
	MetricName string    `json:"metric_name" example:"DCGM_FI_DEV_GPU_TEMP"`
	StartTime  time.Time `json:"start_time" format:"date-time" example:"2025-07-18T20:00:00Z"`
	EndTime    time.Time `json:"end_time" format:"date-time" example:"2025-07-18T21:00:00Z"`
	// StepSeconds is the bucket width.
	StepSeconds float64 `json:"step_seconds" example:"60"`
	// Source is rollup (1-minute rollups, raw samples for the minutes not
	// rolled up yet; buckets cover whole minutes) or raw.
	Source  string         `json:"source" enums:"rollup,raw" example:"rollup"`
	Unit    string         `json:"unit" example:"°C"`
	Buckets []SeriesBucket `json:"buckets"`
}

// FleetGPU is one GPU of a fleet summary's top list.
type FleetGPU struct {
	GPUID     string    `json:"gpu_id" example:"GPU-5fd4f087-86f3-7a43-b711-4771313afc50"`
	Hostname  string    `json:"hostname" example:"mtv5-dgx1-hgpu-031"`
	GPUIndex  int       `json:"gpu_index" example:"0"`
	Value     float64   `json:"value" example:"83"`
	Timestamp time.Time `json:"timestamp" format:"date-time" example:"2025-07-18T20:42:34Z"`
}

// FleetSummary is the body of GET /api/v1/fleet/summary. The statistics are
// null when no GPU has a value (count 0).
type FleetSummary struct {
	MetricName string `json:"metric_name" example:"DCGM_FI_DEV_GPU_TEMP"`
	Unit       string `json:"unit" example:"°C"`
	// Count is how many GPUs' latest values are summarised.
	Count int      `json:"count" example:"247"`
	Min   *float64 `json:"min" extensions:"x-nullable" example:"31"`
	Avg   *float64 `json:"avg" extensions:"x-nullable" example:"44.2"`
	P50   *float64 `json:"p50" extensions:"x-nullable" example:"43"`
	P95   *float64 `json:"p95" extensions:"x-nullable" example:"61"`
	Max   *float64 `json:"max" extensions:"x-nullable" example:"83"`
	// Top are the GPUs with the highest latest values, highest first.
	Top []FleetGPU `json:"top"`
}

func unitOf(metric string) string {
	f, _ := domain.DCGMField(metric)
	return f.Unit
}

func bucketOf(b domain.Bucket) SeriesBucket {
	return SeriesBucket{Start: b.Start.UTC(), Count: b.Count, Min: finite(b.Min), Max: finite(b.Max), Avg: finite(b.Avg), Last: finite(b.Last)}
}

func fleetOf(f domain.FleetSummary) FleetSummary {
	out := FleetSummary{MetricName: f.MetricName, Unit: unitOf(f.MetricName), Count: f.Count, Top: make([]FleetGPU, 0, len(f.Top))}
	if f.Count > 0 {
		out.Min, out.Avg, out.P50, out.P95, out.Max = finite(&f.Min), finite(&f.Avg), finite(&f.P50), finite(&f.P95), finite(&f.Max)
	}
	for _, g := range f.Top {
		out.Top = append(out.Top, FleetGPU{GPUID: g.GPU.UUID, Hostname: g.GPU.Hostname, GPUIndex: g.GPU.GPUIndex, Value: g.Value, Timestamp: g.Timestamp.UTC()})
	}
	return out
}
