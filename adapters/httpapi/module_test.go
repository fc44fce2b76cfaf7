package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/ports"
)

func TestModule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		options fx.Option
	}{
		{"reader only", fx.Options()},
		{"with options, logger and registerer", fx.Options(
			fx.Supply(httpapi.Options{DefaultLimit: 5}),
			fx.Supply(discardLogger()),
			fx.Provide(func() prometheus.Registerer { return prometheus.NewRegistry() }),
		)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store := newStore(t)
			provideReader := fx.Provide(func() ports.TelemetryReader { return store })
			require.NoError(t, fx.ValidateApp(httpapi.Module, provideReader, tt.options))

			var srv *httpapi.Server
			app := fxtest.New(t, httpapi.Module, provideReader, tt.options, fx.Populate(&srv), fx.NopLogger)
			app.RequireStart()
			defer app.RequireStop()
			require.NotNil(t, srv)
			rec := do(t, srv, http.MethodGet, "/api/v1/gpus", nil)
			require.Equal(t, http.StatusOK, rec.Code)
		})
	}
	t.Run("no reader is an error", func(t *testing.T) {
		t.Parallel()
		require.Error(t, fx.ValidateApp(httpapi.Module, fx.Invoke(func(*httpapi.Server) {})))
	})
}
