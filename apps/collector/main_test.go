package main

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

func TestValidateApp(t *testing.T) {
	t.Parallel()
	for _, queue := range []string{"postgres", "memory"} {
		for _, store := range []string{"postgres", "memory"} {
			env := platform.NewEnvFrom(map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x", "QUEUE_BACKEND": queue, "STORE_BACKEND": store})
			require.NoError(t, fx.ValidateApp(options(env)), "queue %s store %s", queue, store)
			require.NoError(t, env.Err())
		}
	}
}

func TestUnknownBackendIsAStartError(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"QUEUE_BACKEND": "kafka", "STORE_BACKEND": "memory", "LEASE_MAX": "0"})
	_ = options(env)
	require.ErrorContains(t, env.Err(), "QUEUE_BACKEND")
	require.ErrorContains(t, env.Err(), "LEASE_MAX")
}

func TestStartStopInMemory(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"QUEUE_BACKEND": "memory", "STORE_BACKEND": "memory", "HTTP_ADDR": "127.0.0.1:0"})
	fxtest.New(t, options(env)).RequireStart().RequireStop()
}
