package pgdb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/internal/pgdb"
	"github.com/gpufleet/telemetry/ports"
)

// TestTranslate pins the one mapping, SQLSTATE class by class.
func TestTranslate(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return fmt.Errorf("exec: %w", &pgconn.PgError{Code: code, Message: "m"}) }
	tests := []struct {
		name string
		err  error
		want error // the sentinel it must carry
	}{
		{"22 data exception (bad jsonb)", pg("22P02"), ports.ErrInvalidArgument},
		{"22 string too long", pg("22001"), ports.ErrInvalidArgument},
		{"23 unique violation", pg("23505"), ports.ErrInvalidArgument},
		{"23 not-null violation", pg("23502"), ports.ErrInvalidArgument},
		{"54 index row too large", pg("54000"), ports.ErrInvalidArgument},
		{"08 connection failure", pg("08006"), ports.ErrUnavailable},
		{"40 serialization failure", pg("40001"), ports.ErrUnavailable},
		{"40 deadlock", pg("40P01"), ports.ErrUnavailable},
		{"53 too many connections", pg("53300"), ports.ErrUnavailable},
		{"55 lock not available", pg("55P03"), ports.ErrUnavailable},
		{"57 statement timeout", pg("57014"), ports.ErrUnavailable},
		{"57 admin shutdown", pg("57P01"), ports.ErrUnavailable},
		{"58 system error", pg("58030"), ports.ErrUnavailable},
		{"42 undefined table (mid-migration)", pg("42P01"), ports.ErrUnavailable},
		{"42 undefined column (mid-migration)", pg("42703"), ports.ErrUnavailable},
		{"42 datatype mismatch (a value)", pg("42804"), ports.ErrInvalidArgument},
		{"42 cannot coerce (a value)", pg("42846"), ports.ErrInvalidArgument},
		{"XX internal error", pg("XX000"), ports.ErrUnavailable},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), ports.ErrUnavailable},
		{"closed pool", puddle.ErrClosedPool, ports.ErrUnavailable},
		{"connection cut", io.ErrUnexpectedEOF, ports.ErrUnavailable},
		{"connect error", &pgconn.ConnectError{}, ports.ErrUnavailable},
		{"unknown error", errors.New("connection reset"), ports.ErrUnavailable},
		{"cancelled statement", fmt.Errorf("exec: %w", context.Canceled), ports.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := pgdb.Translate(tc.err)
			require.ErrorIs(t, got, tc.err, "the driver error stays in the chain")
			for _, s := range []error{ports.ErrInvalidArgument, ports.ErrUnavailable} {
				require.Equal(t, s == tc.want, errors.Is(got, s), "errors.Is(%v)", s)
			}
		})
	}
	require.Nil(t, pgdb.Translate(nil))
	already := fmt.Errorf("x: %w", ports.ErrUnavailable)
	require.Equal(t, already, pgdb.Translate(already))
}

// TestPredicates pins the two errors the store handles itself: a rolled-back
// transaction it runs again, a missing partition it creates.
func TestPredicates(t *testing.T) {
	t.Parallel()
	pg := func(code, msg string) error { return fmt.Errorf("exec: %w", &pgconn.PgError{Code: code, Message: msg}) }
	tests := []struct {
		err                     error
		rolledBack, noPartition bool
	}{
		{pg("40P01", "deadlock detected"), true, false},
		{pg("40001", "could not serialize access"), true, false},
		{pg("23514", `no partition of relation "samples" found for row`), false, true},
		{pg("23514", `new row violates check constraint "c"`), false, false},
		{pg("23505", "duplicate key"), false, false},
		{errors.New("40P01"), false, false},
		{nil, false, false},
	}
	for _, tc := range tests {
		require.Equal(t, tc.rolledBack, pgdb.IsRolledBack(tc.err), "IsRolledBack(%v)", tc.err)
		require.Equal(t, tc.noPartition, pgdb.IsNoPartition(tc.err), "IsNoPartition(%v)", tc.err)
	}
}
