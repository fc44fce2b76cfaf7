package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	const rows = 20
	base := startForMetrics(t, map[string]string{"STREAMER_CSV_PATH": shipped, "QUEUE_BACKEND": "memory", "STREAMER_MAX_ROWS": "20"})
	requireProbesOK(t, base)
	requireCleanMetrics(t, base,
		"streamer_messages_published_total", "streamer_rows_read_total", "streamer_messages_dropped_total",
		"streamer_csv_rows_skipped_total", "go_goroutines", "process_cpu_seconds_total")
	require.Eventually(t, func() bool {
		_, body := fetch(t, http.MethodGet, base+"/metrics", "")
		return strings.Contains(body, "\nstreamer_messages_published_total 20\n")
	}, 30*time.Second, 20*time.Millisecond, "the %d rows reach the queue", rows)
	requireCleanMetrics(t, base, "streamer_publish_duration_seconds")
}

// startForMetrics starts the app on 127.0.0.1:0 with env and returns the base
// URL of its platform server; the app stops when the test ends.
func startForMetrics(t *testing.T, env map[string]string) string {
	t.Helper()
	env["HTTP_ADDR"] = "127.0.0.1:0"
	e := platform.NewEnvFrom(env)
	var srv *platform.Server
	app := fxtest.New(t, options(e), fx.Populate(&srv))
	require.NoError(t, e.Err())
	app.RequireStart()
	t.Cleanup(app.RequireStop)
	return "http://" + srv.Addr()
}

// fetch makes one request and returns the status and body.
func fetch(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// requireProbesOK checks /healthz and /readyz.
func requireProbesOK(t *testing.T, base string) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz"} {
		code, body := fetch(t, http.MethodGet, base+path, "")
		require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
	}
}

// requireCleanMetrics scrapes /metrics, requires promlint to find no
// problem, requires each name to be exposed, and returns the scrape.
func requireCleanMetrics(t *testing.T, base string, names ...string) string {
	t.Helper()
	code, body := fetch(t, http.MethodGet, base+"/metrics", "")
	require.Equal(t, http.StatusOK, code)
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	require.NoError(t, err)
	require.Empty(t, problems, "promlint")
	for _, name := range names {
		require.Contains(t, body, "\n# TYPE "+name+" ", "metric %s is exposed", name)
	}
	return body
}
