// Package domain holds the plain types and rules of the telemetry pipeline:
// a telemetry point as DCGM exports it, the GPU it belongs to, the queue's
// messages and leases, and the partition math shared by the queue readers and
// the partition controller. It does no I/O and depends only on the standard
// library and google/uuid.
//
// A GPU's identity is its UUID ("GPU-5fd4f087-…"). The CSV's gpu_id column is
// the GPU's index on its host ("0".."7"), which repeats across hosts; it is kept
// as GPUIndex and never used as a key.
package domain
