package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/gpufleet/telemetry/ports"
)

// translate maps a driver error to the ports sentinels, keeping the original
// in the chain: bad data (SQLSTATE class 22, 23) is ErrInvalidArgument; a
// lost or refused connection, a closed pool, a server shutting down or out of
// resources, a deadlock or serialization failure, and a deadline are
// ErrUnavailable (the call may succeed later). A cancelled context is
// returned as is. It is the only place the adapter interprets driver errors.
func translate(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch class := pgErr.Code[:2]; class {
		case "22", "23": // data exception, integrity constraint violation
			return fmt.Errorf("%w: %w", ports.ErrInvalidArgument, err)
		case "08", "40", "53", "57", "58": // connection, rollback, resources, operator intervention, system
			return fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
		}
		return err
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, puddle.ErrClosedPool),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.As(err, &connectErr), errors.As(err, &netErr),
		pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	return err
}
