package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	base := apptest.Start(t, options, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)})
	apptest.RequireProbesOK(t, base)
	// One publish, so the labelled protocol metrics are exposed and linted too.
	code, body := apptest.Fetch(t, http.MethodPost, base+"/v1/publish",
		`{"topic":"telemetry","messages":[{"payload":{"gpu_uuid":"GPU-1"},"key":"GPU-1","idempotency_key":"metrics-test/1"}]}`)
	require.Equal(t, http.StatusOK, code, body)
	scrape := apptest.RequireCleanMetrics(t, base,
		"mqwriter_buffer_utilization_ratio", "mqwriter_messages_published_total", "mqhttp_requests_total",
		"go_goroutines", "process_cpu_seconds_total")
	require.Contains(t, scrape, "\nmqwriter_messages_published_total 1\n")
}
