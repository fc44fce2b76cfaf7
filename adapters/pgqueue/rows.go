package pgqueue

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpufleet/telemetry/domain"
)

// rowStore is all a Reader needs from PostgreSQL: the seam between the
// in-memory engine (topic owners: leases, expiry, refill bookkeeping,
// tombstones, drain) and the database, in the way river's driver interface
// separates its producer loop from SQL. Production uses pgRows; the engine's
// unit tests use an in-memory rowStore under testing/synctest, in virtual
// time. What the database decides (which rows a refill sees, what a DELETE
// removes under concurrent writers) stays tested against PostgreSQL.
type rowStore interface {
	// load returns up to limit rows of topic in rng whose ids are not in
	// held, in id order.
	load(ctx context.Context, topic string, rng domain.PartitionRange, held []int64, limit int) ([]loadedRow, error)
	// delete removes the rows with ids, for good.
	delete(ctx context.Context, ids []int64) error
	// ping reports whether the database answers.
	ping(ctx context.Context) error
}

// pgRows is the rowStore on PostgreSQL.
type pgRows struct{ pool *pgxpool.Pool }

var _ rowStore = pgRows{}

// load runs refillSQL. The unnamed statement of QueryExecModeCacheDescribe
// makes PostgreSQL plan with the held ids as a constant, which lets it hash
// them (see refillSQL).
func (p pgRows) load(ctx context.Context, topic string, rng domain.PartitionRange, held []int64, limit int) ([]loadedRow, error) {
	rows, err := p.pool.Query(ctx, refillSQL, pgx.QueryExecModeCacheDescribe, topic, rng.First, rng.Last, held, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]loadedRow, 0, limit)
	for rows.Next() {
		var l loadedRow
		if err := rows.Scan(&l.id, &l.uuid, &l.payload, &l.partition, &l.createdAt); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func (p pgRows) delete(ctx context.Context, ids []int64) error {
	_, err := p.pool.Exec(ctx, deleteSQL, ids)
	return err
}

func (p pgRows) ping(ctx context.Context) error { return p.pool.Ping(ctx) }
