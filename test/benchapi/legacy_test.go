package main

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// The wide table and the samples copy are the migrations' own statements,
// renamed: every reference to the migrations' telemetry table is rewritten
// and nothing else changes.
func TestLegacyStatementsComeFromTheMigrations(t *testing.T) {
	t.Parallel()
	bare := regexp.MustCompile(`\btelemetry\b`)
	tests := []struct {
		name  string
		build func() (string, error)
		want  []string
	}{
		{"table", legacyTable, []string{
			"CREATE TABLE IF NOT EXISTS telemetry_legacy (",
			"labels_raw  text             NOT NULL DEFAULT '',",
			"CONSTRAINT telemetry_legacy_uuid_key UNIQUE (uuid)",
			`CREATE INDEX IF NOT EXISTS telemetry_legacy_gpu_uuid_timestamp_id_idx ON telemetry_legacy (gpu_uuid, "timestamp", id);`,
		}},
		{"samples", legacyFillSamples, []string{
			"INSERT INTO telemetry_samples (series_id, ts, value)",
			"FROM telemetry_legacy t\n",
			"ON CONFLICT DO NOTHING;",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sql, err := tt.build()
			require.NoError(t, err)
			for _, w := range tt.want {
				require.Contains(t, sql, w)
			}
			require.NotRegexp(t, bare, sql, "a reference to the migrations' table was left")
			require.NotContains(t, sql, "--", "comments are dropped")
		})
	}
}
