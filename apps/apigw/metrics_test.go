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
	code, body := apptest.Fetch(t, http.MethodGet, base+"/api/v1/gpus", "")
	require.Equal(t, http.StatusOK, code, body)
	apptest.RequireCleanMetrics(t, base, "apigw_http_request_duration_seconds", "go_goroutines", "process_cpu_seconds_total")
}
