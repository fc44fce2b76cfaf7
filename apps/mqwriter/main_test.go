package main

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/test/pgtest"
)

func TestValidateApp(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x"})
	require.NoError(t, fx.ValidateApp(options(env)))
	require.NoError(t, env.Err())
}

func TestBadConfigNamesTheVariable(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"WRITER_BUFFER_SIZE": "lots"})
	_ = options(env)
	require.ErrorContains(t, env.Err(), "WRITER_BUFFER_SIZE")
	require.ErrorContains(t, env.Err(), "DATABASE_URL is required")
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "HTTP_ADDR": "127.0.0.1:0"})
	app := fxtest.New(t, options(env))
	app.RequireStart().RequireStop()
}
