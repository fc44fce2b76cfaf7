// Package httpapi is the REST API gateway over stored telemetry (the apigw
// app): it lists the GPU registry (filtered, paged) and the metric names,
// serves a GPU's raw telemetry in a time window (keyset-paginated JSON pages
// or one NDJSON stream), its latest values, a metric bucketed by a step, and
// a metric summarised across the fleet, the dead letters (paged) and a cheap
// pipeline health snapshot; it serves the dashboard (ui/, embedded: fleet,
// GPU and pipeline views over these endpoints) at /, and
// the OpenAPI spec generated from the annotations in this package (see docs/
// and `make swagger`) with Swagger UI at /swagger/.
//
// It depends only on ports.TelemetryReader. Every response passes through
// the same middleware: an X-Request-Id, gzip when the client accepts it, an
// access log line, and the apigw_http_request_duration_seconds histogram.
// Every error leaves through one function (writeError) as
// {"error":{"code":"…","message":"…"}}.
//
// Handlers hold no mutable state; the Server is immutable after New.
package httpapi

// The general API information for swag lives in this floating comment (not
// the package comment) so that `go doc` stays readable.

//	@title						GPU Telemetry API
//	@version					1.0
//	@description				Telemetry of the cluster's GPUs as exported by NVIDIA DCGM, streamed through the
//	@description				pipeline's own message queue into PostgreSQL. A GPU is identified by its UUID.
//	@description				Telemetry is served in timestamp order, in bounded pages with a keyset cursor
//	@description				(follow next_cursor until it is absent) or as one NDJSON stream of every matching entry.
//	@description				Errors are JSON: {"error":{"code":"…","message":"…"}}.
//	@BasePath					/
//	@tag.name					gpus
//	@tag.description			The GPU registry.
//	@tag.name					telemetry
//	@tag.description			Stored DCGM samples of one GPU: raw, latest, bucketed.
//	@tag.name					metrics
//	@tag.description			The metric names seen.
//	@tag.name					fleet
//	@tag.description			One metric across every GPU.
//	@tag.name					pipeline
//	@tag.description			The pipeline's health: dead letters, throughput, backlog, host freshness.
//	@externalDocs.description	DCGM exporter field identifiers
//	@externalDocs.url			https://docs.nvidia.com/datacenter/dcgm/latest/dcgm-api/dcgm-api-field-ids.html
