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
	base := apptest.Start(t, options, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "PARTITIONS": "0-255"})
	apptest.RequireProbesOK(t, base)
	// One lease, so the labelled protocol metrics are exposed and linted too.
	code, body := apptest.Fetch(t, http.MethodPost, base+"/v1/lease",
		`{"topic":"telemetry","consumer_id":"metrics-test","max":10,"lease_seconds":30}`)
	require.Equal(t, http.StatusOK, code, body)
	apptest.RequireCleanMetrics(t, base,
		"mqreader_buffer_utilization_ratio", "mqreader_backlog_messages", "mqhttp_requests_total",
		"go_goroutines", "process_cpu_seconds_total")
}

func TestReadyzWithoutPartitions(t *testing.T) {
	t.Parallel()
	base := apptest.Start(t, options, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)})
	code, _ := apptest.Fetch(t, http.MethodGet, base+"/healthz", "")
	require.Equal(t, http.StatusOK, code)
	code, body := apptest.Fetch(t, http.MethodGet, base+"/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, code, "a reader without a range says so")
	require.Contains(t, body, `"reader"`)
}
