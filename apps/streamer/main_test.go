package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/apps/internal/platform"
)

const shipped = "../../" + DefaultCSV

func TestLifecycle(t *testing.T) {
	t.Parallel()
	apptest.RequireLifecycle(t, options, apptest.Lifecycle{Valid: map[string]string{"STREAMER_CSV_PATH": shipped},
		Start: func(*testing.T) map[string]string {
			return map[string]string{"STREAMER_CSV_PATH": shipped, "QUEUE_BACKEND": "memory"}
		}})
}

func TestMissingCSVFailsStart(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"STREAMER_CSV_PATH": "/nonexistent.csv", "QUEUE_BACKEND": "memory", "HTTP_ADDR": "127.0.0.1:0"})
	app := fx.New(options(env))
	require.ErrorContains(t, app.Err(), "nonexistent.csv")
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	const rows = 20
	base := apptest.Start(t, options, map[string]string{"STREAMER_CSV_PATH": shipped, "QUEUE_BACKEND": "memory", "STREAMER_MAX_ROWS": "20"})
	apptest.RequireServes(t, base, nil,
		"streamer_messages_published_total", "streamer_rows_read_total", "streamer_messages_dropped_total",
		"streamer_csv_rows_skipped_total")
	require.Eventually(t, func() bool {
		_, body := apptest.Fetch(t, http.MethodGet, base+"/metrics", "")
		return strings.Contains(body, "\nstreamer_messages_published_total 20\n")
	}, 30*time.Second, 20*time.Millisecond, "the %d rows reach the queue", rows)
	apptest.RequireCleanMetrics(t, base, "streamer_publish_duration_seconds")
}
