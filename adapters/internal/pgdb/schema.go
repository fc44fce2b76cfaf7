package pgdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/gpufleet/telemetry/migrations"
	"github.com/gpufleet/telemetry/ports"
)

// ErrSchemaNewer means the database was migrated by a newer build: this one
// does not know the schema and refuses to serve (roll the app forward).
var ErrSchemaNewer = errors.New("schema newer than this build")

// ErrSchemaBehind means the database lacks migrations this build needs:
// the migration Job (or `make migrate-up`) has not run yet.
var ErrSchemaBehind = errors.New("schema older than this build")

// Row is what CheckSchema queries: a pool, a connection or a transaction.
type Row interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CheckSchema is the database readiness check of every app: one query that
// proves the server answers and reads the schema version, compared with the
// newest migration this build embeds. The error is a *ports.NotReadyError
// whose Reason is safe to show (no host or user): "database unreachable",
// "schema version 5 is newer than this build (4)", or "schema version 2,
// this build needs 4: run the migrations".
func CheckSchema(ctx context.Context, q Row) error {
	have, err := migrations.Current(ctx, q)
	if err != nil {
		return &ports.NotReadyError{Reason: "database unreachable", Err: Translate(err)}
	}
	want := migrations.Latest()
	switch {
	case have > want:
		return &ports.NotReadyError{
			Reason: fmt.Sprintf("schema version %d is newer than this build (%d): upgrade the app", have, want),
			Err:    ErrSchemaNewer}
	case have < want:
		return &ports.NotReadyError{
			Reason: fmt.Sprintf("schema version %d, this build needs %d: run the migrations", have, want),
			Err:    ErrSchemaBehind}
	}
	return nil
}
