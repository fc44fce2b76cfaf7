package csv_test

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	csvsource "github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/ports"
)

func TestModule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		extra   fx.Option
		wantErr string
		path    string
	}{
		{name: "config only", path: shippedCSV, extra: fx.Options()},
		{name: "with logger and registerer", path: shippedCSV, extra: fx.Provide(
			func() *slog.Logger { return quiet() },
			func() prometheus.Registerer { return prometheus.NewRegistry() },
		)},
		{name: "missing file", path: filepath.Join(t.TempDir(), "nope.csv"), extra: fx.Options(), wantErr: "nope.csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				src      ports.Source
				concrete *csvsource.Source
			)
			opts := []fx.Option{
				csvsource.Module, tt.extra, fx.NopLogger,
				fx.Supply(csvsource.Config{Path: tt.path, Once: true}),
				fx.Populate(&src, &concrete),
			}
			require.NoError(t, fx.ValidateApp(opts...))
			app := fx.New(opts...)
			if tt.wantErr != "" {
				require.ErrorContains(t, app.Err(), tt.wantErr)
				return
			}
			require.NoError(t, app.Err())
			fxtest.New(t, opts...).RequireStart().RequireStop()
			require.Same(t, concrete, src.(*csvsource.Source), "one instance behind both types")
			require.Equal(t, 2470, concrete.Rows())
			p, err := src.Next(t.Context())
			require.NoError(t, err)
			require.NoError(t, p.Validate())
		})
	}
}
