package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func TestLifecycle(t *testing.T) {
	t.Parallel()
	apptest.RequireLifecycle(t, options, apptest.Lifecycle{Valid: map[string]string{"DATABASE_URL": apptest.UnreachableDB},
		Start: func(t *testing.T) map[string]string { return map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)} }})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	base := apptest.Start(t, options, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)})
	apptest.RequireServes(t, base, &apptest.Request{Method: http.MethodGet, Path: "/api/v1/gpus"}, "apigw_http_request_duration_seconds")
}

// TestWrongMethodsGetJSON405: every route, the health and metrics ones too,
// refuses a wrong method with a JSON 405 and an Allow header.
func TestWrongMethodsGetJSON405(t *testing.T) {
	t.Parallel()
	base := apptest.Start(t, options, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)})
	tests := []struct {
		method, path, allow string
	}{
		{http.MethodPost, "/healthz", "GET, HEAD"},
		{http.MethodDelete, "/readyz", "GET, HEAD"},
		{http.MethodPut, "/metrics", "GET"},
		{http.MethodPost, "/api/v1/gpus", "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), tt.method, base+tt.path, nil)
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
			require.Equal(t, tt.allow, resp.Header.Get("Allow"))
			var body struct {
				Error struct{ Code string } `json:"error"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
			require.Equal(t, "method_not_allowed", body.Error.Code)
		})
	}
}
