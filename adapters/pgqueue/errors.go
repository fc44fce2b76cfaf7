package pgqueue

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gpufleet/telemetry/ports"
)

// translate maps an error of a PostgreSQL call to the ports sentinel callers
// test for, keeping the driver error in the chain for logs. A data exception
// (SQLSTATE class 22, e.g. a payload jsonb refuses) is the caller's fault and
// fails again unchanged; anything else (connection loss, timeout, shutdown,
// lock or resource errors) means the database could not do the work now.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ports.ErrInvalidArgument), errors.Is(err, ports.ErrUnavailable):
		return err
	case isDataError(err):
		return fmt.Errorf("%w: %w", ports.ErrInvalidArgument, err)
	default:
		return fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
}

// isDataError reports whether err is PostgreSQL refusing a value (SQLSTATE
// class 22) rather than the database failing.
func isDataError(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && len(pgErr.Code) == 5 && pgErr.Code[:2] == "22"
}
