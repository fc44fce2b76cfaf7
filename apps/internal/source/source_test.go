package source_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/adapters/scrape"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/apps/internal/source"
	"github.com/gpufleet/telemetry/ports"
)

func TestSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		// concrete is the adapter type expected behind ports.Source.
		concrete any
		// wantErr is part of the configuration error (naming the variable).
		wantErr string
	}{
		{name: "default csv", env: map[string]string{}, concrete: (*csv.Source)(nil)},
		{name: "csv", env: map[string]string{"STREAMER_SOURCE": "CSV"}, concrete: (*csv.Source)(nil)},
		{name: "scrape list", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_TARGETS": "10.0.0.1:9400,http://10.0.0.2:9400/metrics",
			"SCRAPE_INTERVAL": "30s", "SCRAPE_TIMEOUT": "20s", "SCRAPE_MAX_BODY_BYTES": "1048576"}, concrete: (*scrape.Source)(nil)},
		{name: "scrape file", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_TARGETS_FILE": "/etc/targets"}, concrete: (*scrape.Source)(nil)},
		{name: "unknown source", env: map[string]string{"STREAMER_SOURCE": "kafka"}, wantErr: `STREAMER_SOURCE="kafka"`},
		{name: "scrape without targets", env: map[string]string{"STREAMER_SOURCE": "scrape"}, wantErr: "set exactly one of SCRAPE_TARGETS"},
		{name: "scrape with two target sources", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_TARGETS": "h:1", "SCRAPE_TARGETS_FILE": "/t"},
			wantErr: "(2 set)"},
		{name: "bad target", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_TARGETS": "h:1,ftp://x"}, wantErr: "SCRAPE_TARGETS: target"},
		{name: "bad interval", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_TARGETS": "h:1", "SCRAPE_INTERVAL": "15"}, wantErr: `SCRAPE_INTERVAL="15": want a duration`},
		{name: "interval too short", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_TARGETS": "h:1", "SCRAPE_INTERVAL": "10ms"}, wantErr: "SCRAPE_INTERVAL=\"10ms\": want a duration"},
		{name: "timeout not below interval", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_TARGETS": "h:1", "SCRAPE_INTERVAL": "10s", "SCRAPE_TIMEOUT": "10s"},
			wantErr: "SCRAPE_TIMEOUT=10s: must be shorter than SCRAPE_INTERVAL"},
		{name: "scrape kubernetes", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_KUBERNETES_SELECTOR": "app=nvidia-dcgm-exporter",
			"SCRAPE_KUBERNETES_NAMESPACE": "gpu-operator", "KUBECONFIG": "testdata/kubeconfig"}, concrete: (*scrape.Source)(nil)},
		{name: "kubernetes without namespace", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_KUBERNETES_SELECTOR": "app=x"},
			wantErr: "SCRAPE_KUBERNETES_NAMESPACE is required"},
		{name: "kubernetes bad selector", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_KUBERNETES_SELECTOR": "app in ((",
			"SCRAPE_KUBERNETES_NAMESPACE": "n"}, wantErr: "SCRAPE_KUBERNETES_SELECTOR"},
		{name: "bad body cap", env: map[string]string{"STREAMER_SOURCE": "scrape", "SCRAPE_TARGETS": "h:1", "SCRAPE_MAX_BODY_BYTES": "big"}, wantErr: "SCRAPE_MAX_BODY_BYTES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, ok := tt.env["STREAMER_CSV_PATH"]; !ok {
				tt.env["STREAMER_CSV_PATH"] = "../../../" + csv.DefaultPath
			}
			env := platform.NewEnvFrom(tt.env)
			opt := source.Module(env)
			if tt.wantErr != "" {
				err := env.Err()
				if err == nil {
					err = fx.ValidateApp(opt, fx.Invoke(func(ports.Source) {}))
				}
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, env.Err())
			require.NoError(t, fx.ValidateApp(common(env), opt, fx.Invoke(func(ports.Source) {})))
			var src ports.Source
			app := fx.New(common(env), opt, fx.NopLogger, fx.Populate(&src))
			require.NoError(t, app.Err())
			require.IsType(t, tt.concrete, src)
		})
	}
}

// common is what every app has: logger, registry, the HTTP server.
func common(env *platform.Env) fx.Option {
	return platform.Module(platform.LoadCommon(env, "sourcetest", "127.0.0.1:0"))
}
