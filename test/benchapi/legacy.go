package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/gpufleet/telemetry/migrations"
)

// The benchmark's wide table, telemetry_legacy, is migration 0001's
// telemetry table under another name, loaded with the same samples as the
// time-series store so their sizes compare in one run (issue 14). Its DDL,
// and the statement that copies its rows into the time-series samples, are
// read from the embedded migrations rather than copied, so they cannot
// drift from what the migrations create and move.

// legacyName matches the identifiers of the migrations' wide table: the
// table "telemetry" and its constraint and index names "telemetry_…".
var legacyName = regexp.MustCompile(`\btelemetry(\b|_)`)

// legacyTable returns migration 0001's CREATE TABLE telemetry and its
// CREATE INDEX, renamed to telemetry_legacy and made idempotent (IF NOT
// EXISTS), as one script.
func legacyTable() (string, error) {
	up, err := migrationUp(1)
	if err != nil {
		return "", err
	}
	var out []string
	for _, st := range migrations.Statements(up) {
		st = withoutComments(st)
		switch {
		case strings.HasPrefix(st, "CREATE TABLE telemetry ("):
			st = "CREATE TABLE IF NOT EXISTS " + strings.TrimPrefix(st, "CREATE TABLE ")
		case strings.HasPrefix(st, "CREATE INDEX ") && strings.Contains(st, " ON telemetry ("):
			st = "CREATE INDEX IF NOT EXISTS " + strings.TrimPrefix(st, "CREATE INDEX ")
		default:
			continue
		}
		out = append(out, legacyName.ReplaceAllString(st, "telemetry_legacy$1"))
	}
	if len(out) != 2 {
		return "", fmt.Errorf("migration 0001: want the telemetry table and its index, found %d statements", len(out))
	}
	return strings.Join(out, "\n"), nil
}

// legacyFillSamples returns migration 0002's INSERT INTO telemetry_samples,
// which moves the wide table's rows into the samples of their series,
// reading telemetry_legacy instead of telemetry. (Its series INSERT is not
// reused: the benchmark orders series by their first row's id, see
// sqlFillSeries, and fills day partitions from a range, see
// sqlFillPartitions, instead of scanning every row for its days.)
func legacyFillSamples() (string, error) {
	up, err := migrationUp(2)
	if err != nil {
		return "", err
	}
	for _, st := range migrations.Statements(up) {
		st = withoutComments(st)
		if !strings.HasPrefix(st, "INSERT INTO telemetry_samples ") {
			continue
		}
		if !strings.Contains(st, "FROM telemetry t\n") {
			return "", errors.New("migration 0002: its samples INSERT no longer reads FROM telemetry t")
		}
		return strings.Replace(st, "FROM telemetry t\n", "FROM telemetry_legacy t\n", 1), nil
	}
	return "", errors.New("migration 0002: no INSERT INTO telemetry_samples")
}

// migrationUp is the up script of embedded migration version.
func migrationUp(version int) (string, error) {
	all, err := migrations.All()
	if err != nil {
		return "", fmt.Errorf("read migrations: %w", err)
	}
	for _, m := range all {
		if m.Version == version {
			return m.Up, nil
		}
	}
	return "", fmt.Errorf("no migration %04d", version)
}

// withoutComments drops a statement's comment lines and surrounding space.
func withoutComments(st string) string {
	var b strings.Builder
	for line := range strings.Lines(st) {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line)
		}
	}
	return strings.TrimSpace(b.String())
}
