// Package apptest starts an app's fx options in a test and checks what every
// app must serve: /healthz, /readyz and a promlint-clean /metrics. Only tests
// import it.
package apptest

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
)

// Start builds the app's options from env (HTTP_ADDR forced to
// 127.0.0.1:0), starts it, stops it when the test ends, and returns the base
// URL of its server.
func Start(t *testing.T, build func(*platform.Env) fx.Option, env map[string]string) string {
	t.Helper()
	env["HTTP_ADDR"] = "127.0.0.1:0"
	e := platform.NewEnvFrom(env)
	var srv *platform.Server
	app := fxtest.New(t, build(e), fx.Populate(&srv))
	require.NoError(t, e.Err())
	app.RequireStart()
	t.Cleanup(app.RequireStop)
	return "http://" + srv.Addr()
}

// Fetch makes one request (a JSON body when body is not empty) and returns
// the status and body.
func Fetch(t *testing.T, method, url, body string) (int, string) {
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

// RequireProbesOK checks /healthz and /readyz answer 200.
func RequireProbesOK(t *testing.T, base string) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz"} {
		code, body := Fetch(t, http.MethodGet, base+path, "")
		require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
	}
}

// RequireCleanMetrics scrapes /metrics, requires promlint to find no
// problem and each name to be exposed, and returns the scrape.
func RequireCleanMetrics(t *testing.T, base string, names ...string) string {
	t.Helper()
	code, body := Fetch(t, http.MethodGet, base+"/metrics", "")
	require.Equal(t, http.StatusOK, code)
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	require.NoError(t, err)
	require.Empty(t, problems, "promlint")
	for _, name := range names {
		require.Contains(t, body, "\n# TYPE "+name+" ", "metric %s is exposed", name)
	}
	return body
}
