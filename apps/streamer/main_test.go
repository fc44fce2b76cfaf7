package main

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

const shipped = "../../" + DefaultCSV

func TestValidateApp(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"STREAMER_CSV_PATH": shipped})
	require.NoError(t, fx.ValidateApp(options(env)))
	require.NoError(t, env.Err())
}

func TestMissingCSVFailsStart(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"STREAMER_CSV_PATH": "/nonexistent.csv", "QUEUE_BACKEND": "memory", "HTTP_ADDR": "127.0.0.1:0"})
	app := fx.New(options(env))
	require.ErrorContains(t, app.Err(), "nonexistent.csv")
}

func TestStartStopInMemory(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"STREAMER_CSV_PATH": shipped, "QUEUE_BACKEND": "memory", "HTTP_ADDR": "127.0.0.1:0"})
	fxtest.New(t, options(env)).RequireStart().RequireStop()
}
