package stack

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/csv"
)

// ShippedCSV is the DCGM dump shipped with the project, relative to the
// module root: the streamer's default.
const ShippedCSV = csv.DefaultPath

// ShippedCSVPath is the absolute path of ShippedCSV.
func ShippedCSVPath() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, filepath.FromSlash(ShippedCSV)), nil
}

// StartApp runs binDir/name for the rest of t, as the end-to-end suites do:
// with env plus LOG_LEVEL=warn, logging to logDir/name.log. It fails t when
// the app's /readyz does not answer 200 within a minute, and stops the app
// at t's cleanup.
func StartApp(t testing.TB, binDir, name, logDir string, env map[string]string) *Proc {
	t.Helper()
	withLevel := map[string]string{"LOG_LEVEL": "warn"}
	for k, v := range env {
		withLevel[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	proc, err := StartReady(ctx, filepath.Join(binDir, name), name, logDir, withLevel, "/readyz")
	require.NoError(t, err)
	t.Cleanup(func() { _ = proc.Stop(45 * time.Second) })
	return proc
}

// GetJSON fetches url from a running app and decodes its answer, failing t
// unless it is a 200 with a JSON body.
func GetJSON[T any](t testing.TB, url string) T {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, body)
	var v T
	require.NoError(t, json.Unmarshal(body, &v), "%s", url)
	return v
}
