package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Field bounds of a telemetry point, in bytes. Every value a point carries
// ends in an indexed text column or a label set, so each has a ceiling far
// above what dcgm-exporter sends and far below what PostgreSQL refuses (an
// index row over ~2.7 kB fails the whole batch with SQLSTATE 54000). A point
// beyond them is invalid: refused at publish, dead-lettered by the collector.
const (
	MaxGPUUUIDBytes    = 128   // "GPU-" and a UUID is 40
	MaxMetricNameBytes = 256   // DCGM field names are under 40
	MaxHostnameBytes   = 253   // a DNS name
	MaxDeviceBytes     = 64    // "nvidia7"
	MaxModelNameBytes  = 256   // "NVIDIA H100 80GB HBM3"
	MaxK8sNameBytes    = 253   // container, pod and namespace names
	MaxLabelsRawBytes  = 16384 // the exporter's whole label set
)

// pointFields are the bounded text fields of a point by their JSON names.
var pointFields = []struct {
	name  string
	value func(Point) string
	max   int
}{
	{"gpu_uuid", func(p Point) string { return p.GPUUUID }, MaxGPUUUIDBytes},
	{"metric_name", func(p Point) string { return p.MetricName }, MaxMetricNameBytes},
	{"hostname", func(p Point) string { return p.Hostname }, MaxHostnameBytes},
	{"device", func(p Point) string { return p.Device }, MaxDeviceBytes},
	{"model_name", func(p Point) string { return p.ModelName }, MaxModelNameBytes},
	{"container", func(p Point) string { return p.Container }, MaxK8sNameBytes},
	{"pod", func(p Point) string { return p.Pod }, MaxK8sNameBytes},
	{"namespace", func(p Point) string { return p.Namespace }, MaxK8sNameBytes},
	{"labels_raw", func(p Point) string { return p.LabelsRaw }, MaxLabelsRawBytes},
}

// checkBounds reports the first field over its bound or holding a NUL byte
// (PostgreSQL text cannot hold one).
func (p Point) checkBounds() error {
	for _, f := range pointFields {
		if err := checkField(f.name, f.value(p), f.max); err != nil {
			return err
		}
	}
	return nil
}

func checkField(name, value string, limit int) error {
	switch {
	case len(value) > limit:
		return invalidPoint(fmt.Sprintf("%s is %d bytes, over the %d byte limit", name, len(value), limit))
	case strings.IndexByte(value, 0) >= 0:
		return invalidPoint(name + " contains a NUL byte")
	}
	return nil
}

// CheckPointPayload checks the bounded fields of a telemetry point's JSON
// (a publish to TelemetryTopic) against the bounds above, naming the first
// field that breaks one: mqwriter refuses such a publish with a 400 rather
// than queue a message the store can never hold. It checks only what it can
// read: a payload that is not a JSON object, or a field that is not a
// string, is left to the collector, which dead-letters what it cannot
// decode. The error wraps ErrInvalidPoint.
func CheckPointPayload(payload []byte) error {
	// Only the bounded text fields: decoding the whole Point would parse
	// the timestamp too, for nothing. A field of another type is a type
	// error, after which json fills the others; a syntax error fills nothing.
	var t struct {
		GPUUUID    string `json:"gpu_uuid"`
		MetricName string `json:"metric_name"`
		Hostname   string `json:"hostname"`
		Device     string `json:"device"`
		ModelName  string `json:"model_name"`
		Container  string `json:"container"`
		Pod        string `json:"pod"`
		Namespace  string `json:"namespace"`
		LabelsRaw  string `json:"labels_raw"`
	}
	if err := json.Unmarshal(payload, &t); err != nil {
		if _, typeErr := errors.AsType[*json.UnmarshalTypeError](err); !typeErr {
			return nil
		}
	}
	return Point{GPUUUID: t.GPUUUID, MetricName: t.MetricName, Hostname: t.Hostname, Device: t.Device,
		ModelName: t.ModelName, Container: t.Container, Pod: t.Pod, Namespace: t.Namespace,
		LabelsRaw: t.LabelsRaw}.checkBounds()
}
