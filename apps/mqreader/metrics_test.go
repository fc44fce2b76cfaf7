package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	base := startForMetrics(t, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "PARTITIONS": "0-255"})
	requireProbesOK(t, base)
	// One lease, so the labelled protocol metrics are exposed and linted too.
	code, body := fetch(t, http.MethodPost, base+"/v1/lease",
		`{"topic":"telemetry","consumer_id":"metrics-test","max":10,"lease_seconds":30}`)
	require.Equal(t, http.StatusOK, code, body)
	requireCleanMetrics(t, base,
		"mqreader_buffer_utilization_ratio", "mqreader_backlog_messages", "mqhttp_requests_total",
		"go_goroutines", "process_cpu_seconds_total")
}

func TestReadyzWithoutPartitions(t *testing.T) {
	t.Parallel()
	base := startForMetrics(t, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)})
	code, _ := fetch(t, http.MethodGet, base+"/healthz", "")
	require.Equal(t, http.StatusOK, code)
	code, body := fetch(t, http.MethodGet, base+"/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, code, "a reader without a range says so")
	require.Contains(t, body, `"reader"`)
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
