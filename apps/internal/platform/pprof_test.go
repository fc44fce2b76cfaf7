package platform_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

func TestPprofHandlers(t *testing.T) {
	t.Parallel()
	paths := []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1", "/debug/pprof/symbol"}
	tests := []struct {
		name   string
		env    map[string]string
		status int
	}{
		{name: "off by default", env: map[string]string{}, status: http.StatusNotFound},
		{name: "PPROF=false", env: map[string]string{"PPROF": "false"}, status: http.StatusNotFound},
		{name: "PPROF=true", env: map[string]string{"PPROF": "true"}, status: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			common := platform.LoadCommon(env, "pproftest", ":0")
			require.NoError(t, env.Err())
			s, _ := newServerWith(platform.ServerParams{Config: platform.ServerConfig{Pprof: common.Pprof}})
			for _, p := range paths {
				rec := serve(t, s.Handler(), http.MethodGet, p)
				require.Equal(t, tt.status, rec.Code, p)
				if tt.status == http.StatusOK {
					require.NotEmpty(t, rec.Body.String(), p)
				}
			}
			// The health endpoints are unaffected either way.
			require.Equal(t, http.StatusOK, serve(t, s.Handler(), http.MethodGet, "/healthz").Code)
		})
	}
}

func TestPprofBadValue(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"PPROF": "maybe"})
	_ = platform.LoadCommon(env, "pproftest", ":0")
	require.ErrorContains(t, env.Err(), "PPROF")
}
