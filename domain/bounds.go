package domain

import (
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

// checkBounds reports the first field over its bound or holding a NUL byte
// (PostgreSQL text cannot hold one).
func (p Point) checkBounds() error {
	fields := []struct {
		name  string
		value string
		max   int
	}{
		{"gpu_uuid", p.GPUUUID, MaxGPUUUIDBytes},
		{"metric_name", p.MetricName, MaxMetricNameBytes},
		{"hostname", p.Hostname, MaxHostnameBytes},
		{"device", p.Device, MaxDeviceBytes},
		{"model_name", p.ModelName, MaxModelNameBytes},
		{"container", p.Container, MaxK8sNameBytes},
		{"pod", p.Pod, MaxK8sNameBytes},
		{"namespace", p.Namespace, MaxK8sNameBytes},
		{"labels_raw", p.LabelsRaw, MaxLabelsRawBytes},
	}
	for _, f := range fields {
		switch {
		case len(f.value) > f.max:
			return invalidPoint(fmt.Sprintf("%s is %d bytes, over the %d byte limit", f.name, len(f.value), f.max))
		case strings.IndexByte(f.value, 0) >= 0:
			return invalidPoint(f.name + " contains a NUL byte")
		}
	}
	return nil
}
