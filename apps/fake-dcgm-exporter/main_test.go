package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/apps/internal/fakeexporter"
	"github.com/gpufleet/telemetry/apps/internal/platform"
)

const shipped = "../../" + csv.DefaultPath

func TestValidateApp(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"FAKE_DCGM_CSV_PATH": shipped})
	require.NoError(t, fx.ValidateApp(options(env)))
	require.NoError(t, env.Err())
}

func TestBadJitterNamesTheVariable(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"FAKE_DCGM_JITTER": "lots"})
	options(env)
	require.ErrorContains(t, env.Err(), "FAKE_DCGM_JITTER")
}

// The app serves the shipped CSV as 31 exporters with dcgm-exporter's labels
// and writes their URLs to the targets file.
func TestServesTheCSVPerHost(t *testing.T) {
	t.Parallel()
	targets := filepath.Join(t.TempDir(), "targets")
	env := platform.NewEnvFrom(map[string]string{"FAKE_DCGM_CSV_PATH": shipped, "FAKE_DCGM_BASE_PORT": "0",
		"FAKE_DCGM_TARGETS_FILE": targets, "HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "warn"})
	var fakes *fakeexporter.Fakes
	app := fxtest.New(t, options(env), fx.Populate(&fakes))
	require.NoError(t, env.Err())
	app.RequireStart()
	defer app.RequireStop()

	b, err := os.ReadFile(targets)
	require.NoError(t, err)
	urls := strings.Fields(string(b))
	require.Len(t, urls, 31)
	require.Equal(t, fakes.URLs(), urls)

	resp, err := http.Get(urls[0])
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	// 8 GPUs x 10 metrics, each line with the exporter's label names.
	series := 0
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "DCGM_FI_") {
			series++
		}
	}
	require.Equal(t, 80, series)
	for _, label := range []string{`gpu="`, `UUID="GPU-`, `device="nvidia`, `modelName="`, `Hostname="`, `DCGM_FI_DRIVER_VERSION="`} {
		require.Contains(t, string(body), label)
	}
	require.Contains(t, string(body), "# TYPE DCGM_FI_DEV_GPU_UTIL gauge")
}
