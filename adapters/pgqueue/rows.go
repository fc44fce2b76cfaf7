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
	// record keeps the delivery counts (and last errors, "" for none) of
	// the rows with ids.
	record(ctx context.Context, marks []deliveryMark) error
	// deadLetter moves the rows to dead_letters with their counts and reasons.
	deadLetter(ctx context.Context, marks []deliveryMark) error
	// deadLetters reads up to limit of topic's dead letters set aside by
	// the queue, oldest first.
	deadLetters(ctx context.Context, topic string, limit int) ([]domain.DeadLetter, error)
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
		var deliveries int32
		var lastError *string
		if err := rows.Scan(&l.id, &l.uuid, &l.payload, &l.partition, &l.createdAt, &deliveries, &lastError); err != nil {
			return nil, err
		}
		l.deliveries = int(deliveries)
		if lastError != nil {
			l.lastError = *lastError
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

// deliveryMark is one message's delivery count and last error (or, for a
// dead letter, its reason).
type deliveryMark struct {
	id         int64
	deliveries int
	text       string
}

// markArrays splits marks into the arrays of recordDeliveriesSQL and
// deadLetterSQL; an empty text is NULL.
func markArrays(marks []deliveryMark) (ids []int64, counts []int32, texts []*string) {
	ids, counts, texts = make([]int64, len(marks)), make([]int32, len(marks)), make([]*string, len(marks))
	for i, m := range marks {
		ids[i], counts[i] = m.id, int32(min(m.deliveries, domain.MaxMaxDeliveries+1))
		if m.text != "" {
			texts[i] = &marks[i].text
		}
	}
	return ids, counts, texts
}

func (p pgRows) record(ctx context.Context, marks []deliveryMark) error {
	ids, counts, texts := markArrays(marks)
	_, err := p.pool.Exec(ctx, recordDeliveriesSQL, ids, counts, texts)
	return err
}

func (p pgRows) deadLetter(ctx context.Context, marks []deliveryMark) error {
	ids, counts, texts := markArrays(marks)
	_, err := p.pool.Exec(ctx, deadLetterSQL, ids, counts, texts)
	return err
}

func (p pgRows) deadLetters(ctx context.Context, topic string, limit int) ([]domain.DeadLetter, error) {
	rows, err := p.pool.Query(ctx, deadLettersSQL, topic, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (domain.DeadLetter, error) {
		var (
			d          domain.DeadLetter
			payload    string
			deliveries int32
		)
		err := row.Scan(&d.MsgUUID, &d.Topic, &payload, &d.Reason, &deliveries, &d.Source)
		d.Payload, d.Deliveries = []byte(payload), int(deliveries)
		return d, err
	})
}
