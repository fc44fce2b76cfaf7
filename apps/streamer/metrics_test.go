package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/stretchr/testify/require"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	const rows = 20
	base := apptest.Start(t, options, map[string]string{"STREAMER_CSV_PATH": shipped, "QUEUE_BACKEND": "memory", "STREAMER_MAX_ROWS": "20"})
	apptest.RequireProbesOK(t, base)
	apptest.RequireCleanMetrics(t, base,
		"streamer_messages_published_total", "streamer_rows_read_total", "streamer_messages_dropped_total",
		"streamer_csv_rows_skipped_total", "go_goroutines", "process_cpu_seconds_total")
	require.Eventually(t, func() bool {
		_, body := apptest.Fetch(t, http.MethodGet, base+"/metrics", "")
		return strings.Contains(body, "\nstreamer_messages_published_total 20\n")
	}, 30*time.Second, 20*time.Millisecond, "the %d rows reach the queue", rows)
	apptest.RequireCleanMetrics(t, base, "streamer_publish_duration_seconds")
}
