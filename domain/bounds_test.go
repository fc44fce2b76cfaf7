package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
)

func TestPointFieldBounds(t *testing.T) {
	t.Parallel()
	ok := domain.Point{Timestamp: time.Unix(1, 0), MetricName: "DCGM_FI_DEV_GPU_TEMP", GPUUUID: "GPU-5fd4f087-86f3-7a43-b711-4771313afc50",
		Hostname: "h", LabelsRaw: `gpu="0"`}
	require.NoError(t, ok.Validate())
	runPointCases(t, ok, []pointCase{
		{"gpu_uuid of 3000 bytes", func(p *domain.Point) { p.GPUUUID = strings.Repeat("x", 3000) }, "gpu_uuid is 3000 bytes, over the 128 byte limit"},
		{"labels_raw of 1 MiB", func(p *domain.Point) { p.LabelsRaw = strings.Repeat("l", 1<<20) }, "labels_raw is 1048576 bytes"},
		{"hostname over a DNS name", func(p *domain.Point) { p.Hostname = strings.Repeat("h", 254) }, "hostname is 254 bytes"},
		{"metric name too long", func(p *domain.Point) { p.MetricName = strings.Repeat("m", 257) }, "metric_name is 257 bytes"},
		{"pod too long", func(p *domain.Point) { p.Pod = strings.Repeat("p", 254) }, "pod is 254 bytes"},
		{"NUL in a label set", func(p *domain.Point) { p.LabelsRaw = "a\x00b" }, "labels_raw contains a NUL byte"},
		{"NUL in a model name", func(p *domain.Point) { p.ModelName = "H100\x00" }, "model_name contains a NUL byte"},
	})
	at := ok
	at.GPUUUID = strings.Repeat("g", domain.MaxGPUUUIDBytes)
	at.LabelsRaw = strings.Repeat("l", domain.MaxLabelsRawBytes)
	require.NoError(t, at.Validate(), "bounds are inclusive")
}

func TestCheckPointPayload(t *testing.T) {
	t.Parallel()
	ok := `{"gpu_uuid":"GPU-1","metric_name":"m","labels_raw":"x"}`
	require.NoError(t, domain.CheckPointPayload([]byte(ok)))
	for _, notPoint := range []string{`"s"`, `[1]`, `{"gpu_uuid":5}`, `not json`} {
		require.NoError(t, domain.CheckPointPayload([]byte(notPoint)), "left to the collector: %s", notPoint)
	}
	long := `{"gpu_uuid":"` + strings.Repeat("u", 3000) + `"}`
	err := domain.CheckPointPayload([]byte(long))
	require.ErrorIs(t, err, domain.ErrInvalidPoint)
	require.ErrorContains(t, err, "gpu_uuid is 3000 bytes, over the 128 byte limit")
	err = domain.CheckPointPayload([]byte(`{"namespace":"a\u0000b"}`))
	require.ErrorContains(t, err, "namespace contains a NUL byte")
	mixed := `{"gpu_uuid":5,"hostname":"` + strings.Repeat("h", domain.MaxHostnameBytes+1) + `"}`
	require.ErrorContains(t, domain.CheckPointPayload([]byte(mixed)), "hostname", "a field of another type does not hide the others")
	label := `{"labels_raw":"` + strings.Repeat("l", domain.MaxLabelsRawBytes+1) + `"}`
	require.ErrorContains(t, domain.CheckPointPayload([]byte(label)), "labels_raw")
}
