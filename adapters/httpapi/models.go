package httpapi

import (
	"math"
	"time"

	"github.com/gpufleet/telemetry/domain"
)

// GPU is one entry of the GPU registry.
type GPU struct {
	// ID is the GPU's UUID, its identity in the cluster.
	ID string `json:"id" example:"GPU-5fd4f087-86f3-7a43-b711-4771313afc50"`
	// Hostname is the host the GPU is in.
	Hostname string `json:"hostname" example:"mtv5-dgx1-hgpu-031"`
	// GPUIndex is the GPU's index on its host (DCGM's gpu_id); it repeats across hosts.
	GPUIndex int `json:"gpu_index" example:"0"`
	// Device is the device name on the host.
	Device string `json:"device" example:"nvidia0"`
	// ModelName is the GPU model.
	ModelName string `json:"model_name" example:"NVIDIA H100 80GB HBM3"`
	// LastSeen is the timestamp of the GPU's newest stored sample (RFC 3339, UTC).
	LastSeen time.Time `json:"last_seen" format:"date-time" example:"2025-07-18T20:42:34Z"`
}

// GPUList is the body of GET /api/v1/gpus.
type GPUList struct {
	// GPUs is ordered by hostname, then GPU index; empty (never null) when no GPU reported yet.
	GPUs []GPU `json:"gpus"`
	// NextCursor is present when more GPUs may follow: pass it as cursor, with the same filters.
	NextCursor string `json:"next_cursor,omitempty" example:"eyJ2IjoxLCJoIjoiaG9zdC1hIiwiaSI6MywidSI6IkdQVS0xIiwiZiI6IiJ9"`
}

// TelemetryEntry is one stored DCGM sample. It is also one line of the NDJSON stream.
type TelemetryEntry struct {
	// Timestamp is when the sample was taken (RFC 3339, UTC, with fractional seconds when present).
	Timestamp time.Time `json:"timestamp" format:"date-time" example:"2025-07-18T20:42:34.123456Z"`
	// MetricName is the DCGM field name, as exported.
	MetricName string `json:"metric_name" example:"DCGM_FI_DEV_GPU_UTIL"`
	// Value is the sample; null when the exporter reported no value (or a DCGM blank sentinel).
	Value *float64 `json:"value" extensions:"x-nullable" example:"87.5"`
	// GPUUUID is the GPU's UUID.
	GPUUUID string `json:"gpu_uuid" example:"GPU-5fd4f087-86f3-7a43-b711-4771313afc50"`
	// Hostname is the host the GPU is in.
	Hostname string `json:"hostname" example:"mtv5-dgx1-hgpu-031"`
	// GPUIndex is the GPU's index on its host.
	GPUIndex int `json:"gpu_index" example:"0"`
	// Device is the device name on the host.
	Device string `json:"device" example:"nvidia0"`
	// ModelName is the GPU model.
	ModelName string `json:"model_name" example:"NVIDIA H100 80GB HBM3"`
	// Container is the Kubernetes container using the GPU, if any.
	Container string `json:"container" example:""`
	// Pod is the Kubernetes pod using the GPU, if any.
	Pod string `json:"pod" example:""`
	// Namespace is the Kubernetes namespace of that pod, if any.
	Namespace string `json:"namespace" example:""`
	// LabelsRaw is the exporter's Prometheus labels, verbatim.
	LabelsRaw string `json:"labels_raw" example:"DCGM_FI_DRIVER_VERSION=\"535.129.03\",Hostname=\"mtv5-dgx1-hgpu-031\",UUID=\"GPU-5fd4f087-86f3-7a43-b711-4771313afc50\",device=\"nvidia0\",gpu=\"0\",modelName=\"NVIDIA H100 80GB HBM3\""`
}

// TelemetryPage is the JSON body of GET /api/v1/gpus/{id}/telemetry.
type TelemetryPage struct {
	// GPUID is the GPU UUID asked for.
	GPUID string `json:"gpu_id" example:"GPU-5fd4f087-86f3-7a43-b711-4771313afc50"`
	// Entries are ordered by timestamp ascending; empty (never null) when nothing matches.
	Entries []TelemetryEntry `json:"entries"`
	// NextCursor is present whenever more entries may follow: pass it as the cursor
	// parameter, with the same gpu, start_time, end_time and metric_name, for the next page.
	NextCursor string `json:"next_cursor,omitempty" example:"eyJ2IjoxLCJ0cyI6IjIwMjUtMDctMThUMjA6NDI6MzRaIiwiaWQiOjQyLCJxIjoiM3FfNnBDWWNmR0lLX2JJQiJ9"`
}

// ErrorResponse is the body of every error.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong.
type ErrorBody struct {
	// Code is stable and machine-readable.
	Code string `json:"code" enums:"bad_request,not_found,method_not_allowed,unavailable,timeout,internal" example:"bad_request"`
	// Message is for humans; it names the offending parameter and the expected format.
	Message string `json:"message" example:"start_time: \"2025-07-18\" is not an RFC 3339 timestamp (want e.g. 2025-07-18T20:42:34Z or 2025-07-18T20:42:34.5+02:00)"`
	// RequestID echoes the X-Request-Id header, to find the request in the logs.
	RequestID string `json:"request_id,omitempty" example:"0b5f8f9e-3c1d-4f53-9a57-8d0b8d3f1c2a"`
}

func gpuOf(g domain.GPU) GPU {
	return GPU{ID: g.UUID, Hostname: g.Hostname, GPUIndex: g.GPUIndex, Device: g.Device,
		ModelName: g.ModelName, LastSeen: g.LastSeen.UTC()}
}

func entryOf(r domain.Record) TelemetryEntry {
	return TelemetryEntry{
		Timestamp: r.Timestamp.UTC(), MetricName: r.MetricName, Value: finite(r.Value), GPUUUID: r.GPUUUID,
		Hostname: r.Hostname, GPUIndex: r.GPUIndex, Device: r.Device, ModelName: r.ModelName,
		Container: r.Container, Pod: r.Pod, Namespace: r.Namespace, LabelsRaw: r.LabelsRaw,
	}
}

// finite returns v, or nil when it is nil, NaN or ±Inf: encoding/json cannot
// represent those; the store should never hold them (blank sentinels are
// NULL), but one bad value must not fail a response.
func finite(v *float64) *float64 {
	if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
		return nil
	}
	return v
}
