package main

import (
	"io"
	"net/http"
	"net/http/httptest"
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

// With STREAMER_SOURCE=scrape the per-target scrape metrics are served and
// promlint-clean.
func TestScrapeMetrics(t *testing.T) {
	t.Parallel()
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "go_goroutines 3\n"+`DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-m",Hostname="h"} 7`+"\n")
	}))
	t.Cleanup(exporter.Close)
	base := apptest.Start(t, options, map[string]string{"QUEUE_BACKEND": "memory", "STREAMER_SOURCE": "scrape",
		"SCRAPE_TARGETS": exporter.URL, "SCRAPE_INTERVAL": "1s"})
	apptest.RequireProbesOK(t, base)
	require.Eventually(t, func() bool {
		_, body := apptest.Fetch(t, http.MethodGet, base+"/metrics", "")
		return strings.Contains(body, `streamer_scrape_target_up{target="`+exporter.URL+`/metrics"} 1`) &&
			strings.Contains(body, "\nstreamer_scrape_series_ignored_total 1")
	}, 30*time.Second, 20*time.Millisecond)
	apptest.RequireCleanMetrics(t, base, "streamer_scrape_target_up", "streamer_scrape_duration_seconds",
		"streamer_scrape_request_duration_seconds", "streamer_scrape_samples_total", "streamer_scrape_errors_total",
		"streamer_scrape_rounds_skipped_total", "streamer_scrape_series_skipped_total", "streamer_scrape_series_ignored_total",
		"streamer_scrape_targets")
}
