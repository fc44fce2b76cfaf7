package pgdb

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gpufleet/telemetry/ports"
)

// Translate maps a driver error to the ports sentinels, keeping the original
// in the chain for logs (and for errors.Is(err, context.Canceled)). It and
// the predicates below are the only place the adapters interpret
// PostgreSQL's errors (the migrations package, which this one imports,
// reads its own two: 42P01 before the first migration and 55P03 for its
// bounded lock wait):
//
//   - errors about the data — SQLSTATE class 22 (data exception), 23
//     (integrity constraint violation), 54 (program limit exceeded, e.g. an
//     index row too large for a value), and the two class-42 codes a value
//     can raise through a parameter (42804 datatype_mismatch, 42846
//     cannot_coerce) — are ports.ErrInvalidArgument: the same input fails
//     again, so callers isolate and dead-letter it rather than retry;
//   - everything else is ports.ErrUnavailable: connection loss (08), a
//     serialization failure or deadlock (40), resources (53), a lock timeout
//     (55), a shutdown or statement timeout (57), a missing table during a
//     migration (42), a closed pool, a deadline, a cancelled statement. Those
//     are about the database, not the message; treating an unknown error as
//     the data's fault would dead-letter good messages wholesale (a schema
//     mismatch would empty the queue into dead letters), so the safe reading
//     of the unknown is "retry later".
//
// An error that already carries a sentinel is returned unchanged.
func Translate(err error) error {
	switch {
	case err == nil, errors.Is(err, ports.ErrInvalidArgument), errors.Is(err, ports.ErrUnavailable):
		return err
	case IsDataError(err):
		return fmt.Errorf("%w: %w", ports.ErrInvalidArgument, err)
	}
	return fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
}

// IsDataError reports whether err is PostgreSQL refusing a value (SQLSTATE
// class 22, 23 or 54, or 42804/42846) rather than the database failing.
// The rest of class 42 (an undefined table or column: a schema not yet
// migrated) is about the database.
func IsDataError(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	if !ok || len(pgErr.Code) != 5 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return pgErr.Code == "42804" || pgErr.Code == "42846"
}

// IsRolledBack reports a transaction PostgreSQL rolled back to break a
// deadlock (40P01) or a serialization failure (40001): safe to run again as
// it was.
func IsRolledBack(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// IsNoPartition reports a row that no partition of a partitioned table
// accepts (23514 with PostgreSQL's "no partition of relation" message): the
// partition is missing, not the value wrong.
func IsNoPartition(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && pgErr.Code == "23514" && strings.Contains(pgErr.Message, "no partition")
}
