package stack

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRaceReports feeds RaceReports logs shaped like a race-built service's:
// it must name the log with a report and ignore the clean one.
func TestRaceReports(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	race := `{"level":"INFO","msg":"collecting"}
==================
WARNING: DATA RACE
Write at 0x000001926470 by goroutine 33:
  collector.(*Collector).ProcessOnce()
      /src/apps/internal/collector/collector.go:179 +0x65

Previous write at 0x000001926470 by goroutine 34:
  collector.(*Collector).ProcessOnce()
      /src/apps/internal/collector/collector.go:179 +0x84
==================
==================
WARNING: DATA RACE
Read at 0x000001926470 by goroutine 35:
==================
{"level":"INFO","msg":"stopped"}
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "collector.log"), []byte(race), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mqreader.log"), []byte(`{"level":"INFO","msg":"ready"}`+"\n"), 0o600))

	got, err := RaceReports(dir)
	require.NoError(t, err)
	require.Len(t, got, 1, "reports: %q", got)
	require.Contains(t, got[0], "collector.log: 2 race reports; the first:")
	require.Contains(t, got[0], "collector.go:179 +0x84")
	require.NotContains(t, got[0], "goroutine 35", "only the first report")
}

// TestDefaultTokens: a process gets the stack's tokens unless its env sets
// the variable or its _FILE variant.
func TestDefaultTokens(t *testing.T) {
	t.Parallel()
	got := withDefaultTokens(map[string]string{"MQ_CONSUME_TOKEN": "mine-mine-mine-mine", "MQ_PUBLISH_TOKENS_FILE": "/run/tokens", "X": "y"})
	require.Equal(t, map[string]string{
		"MQ_CONSUME_TOKEN":        "mine-mine-mine-mine",
		"MQ_PUBLISH_TOKENS_FILE":  "/run/tokens",
		"MQ_PUBLISH_TOKEN":        PublishToken,
		"MQ_CONSUME_TOKENS":       ConsumeToken,
		"NATS_PUBLISHER_PASSWORD": PublishToken,
		"NATS_CONSUMER_PASSWORD":  ConsumeToken,
		"X":                       "y",
	}, got)
}

func TestBuildCopiesTheApps(t *testing.T) {
	t.Parallel()
	root, err := Root()
	require.NoError(t, err)
	for range 2 { // the second build copies what the first linked
		dir := t.TempDir()
		require.NoError(t, Build(t.Context(), root, dir, "migrate", "apigw"))
		for _, app := range []string{"migrate", "apigw"} {
			info, err := os.Stat(filepath.Join(dir, app))
			require.NoError(t, err)
			require.NotZero(t, info.Mode()&0o111, "%s is executable", app)
		}
	}
	require.ErrorContains(t, Build(t.Context(), root, t.TempDir(), "no-such-app"), "no-such-app")
}
