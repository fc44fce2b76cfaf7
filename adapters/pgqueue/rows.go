package pgqueue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
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
	// load returns up to limit rows of topic in rng with ids from from on
	// that are not in held, in id order, stopping before the row that would
	// take their rowBytes past maxBytes (the first row is returned whatever
	// its size). held may omit ids below from.
	load(ctx context.Context, topic string, rng domain.PartitionRange, from int64, held []int64, limit, maxBytes int) ([]loadedRow, error)
	// stats measures topic's backlog in rng: its rows, counted up to
	// countCap (past it, estimated from the table's statistics), and the
	// created_at of its oldest row (zero when there is none).
	stats(ctx context.Context, topic string, rng domain.PartitionRange, countCap int) (rangeStats, error)
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

// listener is the optional capability of a rowStore to tell the reader as
// soon as a topic has new rows (pgRows: LISTEN on readyChannel, which the
// writer notifies). Without it the reader only polls.
type listener interface {
	// listen holds one subscription until ctx ends or it fails: it calls
	// subscribed once the subscription is live (notifications sent before
	// that are lost), then ready with each topic notified and the lowest id
	// of the rows committed (0 when the notification does not say).
	listen(ctx context.Context, subscribed func(), ready func(topic string, from int64)) error
}

var _ listener = pgRows{}

// errNoSpareConn: a pool of one connection cannot give one to the listener
// without starving the refills, so that reader only polls.
var errNoSpareConn = errors.New("a pool of one connection has none to spare for LISTEN")

// errDeaf: the subscription did not hear its own probe. Behind PgBouncer in
// transaction mode LISTEN succeeds on a server connection the client does
// not keep, and no notification ever arrives; that reader only polls.
var errDeaf = errors.New("LISTEN heard no notification, not even its own probe (a transaction-mode pooler in between?)")

// probeWait is how long a new subscription waits to hear its own probe.
const probeWait = 5 * time.Second

// probePrefix starts the payload of a listener's probe. Topics never start
// with '_' (domain.ValidateTopic), so no reader takes it for a topic.
const probePrefix = "_probe "

// listen holds a pool connection LISTENing on readyChannel. The connection
// is closed, not returned to the pool, when it ends: it carries the
// subscription. Before it reports the subscription live it proves it
// hears: it notifies a probe on another connection and waits up to
// probeWait for it (or any notification); one that hears nothing is deaf
// (errDeaf).
func (p pgRows) listen(ctx context.Context, subscribed func(), ready func(topic string, from int64)) error {
	if p.pool.Config().MaxConns < 2 {
		return errNoSpareConn
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire a connection: %w", err)
	}
	defer conn.Release()
	defer func() { _ = conn.Conn().Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, listenSQL); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	probe := probePrefix + uuid.NewString()
	channel := cmp.Or(p.probeChannel, readyChannel)
	if _, err := p.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, probe); err != nil {
		return fmt.Errorf("notify a probe: %w", err)
	}
	pass := func(payload string) {
		if !strings.HasPrefix(payload, probePrefix) {
			ready(parseReady(payload))
		}
	}
	pctx, cancel := context.WithTimeout(ctx, probeWait)
	n, err := conn.Conn().WaitForNotification(pctx)
	cancel()
	switch {
	case err != nil && ctx.Err() == nil && pctx.Err() != nil:
		return errDeaf
	case err != nil:
		return fmt.Errorf("wait for the probe: %w", err)
	}
	subscribed()
	pass(n.Payload)
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		pass(n.Payload)
	}
}

// parseReady reads a readyChannel payload, "<topic> <lowest id>" (insertSQL).
// A payload without a valid id, as a writer older than the ids sends, gives
// from 0: the reader refills the topic in full.
func parseReady(payload string) (topic string, from int64) {
	topic, id, ok := strings.Cut(payload, " ")
	if !ok {
		return payload, 0
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n < 0 {
		return topic, 0
	}
	return topic, n
}

// pgRows is the rowStore on PostgreSQL.
type pgRows struct {
	pool *pgxpool.Pool
	// probeChannel is where listen sends its probe: readyChannel when
	// empty; tests send it elsewhere to play a deaf subscription.
	probeChannel string
}

var _ rowStore = pgRows{}

// load runs refillSQL. The unnamed statement of QueryExecModeCacheDescribe
// makes PostgreSQL plan with the held ids as a constant, which lets it hash
// them (see refillSQL).
//
// refillSQL already leaves out rows past maxBytes by their stored size;
// rows whose decoded payload still passes it (compressed in storage) are
// read and dropped, not kept, so the byte budget bounds memory, and the
// topic sizes limit from the rows it saw last so that few are dropped.
// (Stopping the query instead would cost the connection.)
func (p pgRows) load(ctx context.Context, topic string, rng domain.PartitionRange, from int64, held []int64, limit, maxBytes int) ([]loadedRow, error) {
	rows, err := p.pool.Query(ctx, refillSQL, pgx.QueryExecModeCacheDescribe, topic, rng.First, rng.Last, held, limit, maxBytes, from)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]loadedRow, 0, min(limit, 1024))
	size, full := 0, false
	for rows.Next() {
		if full {
			continue
		}
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
		if size += loadedBytes(l); len(out) > 0 && size > maxBytes {
			full = true
			continue
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// loadedBytes is the size a loaded row counts for in the byte budgets (see
// msgBytes).
func loadedBytes(l loadedRow) int { return len(l.payload) + leaseEntryBytes }

// rangeStats is one measurement of a topic's rows in a reader's range.
type rangeStats struct {
	backlog   int64
	estimated bool      // backlog came from pg_class.reltuples, not a count
	oldest    time.Time // zero when the range holds no row
}

// stats runs backlogCountSQL and oldestSQL; when the count reaches
// countCap it takes reltuplesSQL's estimate, scaled to the range's share
// of the partitions, if that is larger.
func (p pgRows) stats(ctx context.Context, topic string, rng domain.PartitionRange, countCap int) (rangeStats, error) {
	var st rangeStats
	if err := p.pool.QueryRow(ctx, backlogCountSQL, topic, rng.First, rng.Last, countCap).Scan(&st.backlog); err != nil {
		return st, fmt.Errorf("count backlog: %w", err)
	}
	if st.backlog >= int64(countCap) {
		var tuples float64
		if err := p.pool.QueryRow(ctx, reltuplesSQL).Scan(&tuples); err != nil {
			return st, fmt.Errorf("estimate backlog: %w", err)
		}
		if est := int64(tuples * float64(rng.Len()) / domain.NumPartitions); est > st.backlog {
			st.backlog, st.estimated = est, true
		}
	}
	var oldest pgtype.Timestamptz
	if err := p.pool.QueryRow(ctx, oldestSQL, topic, rng.First, rng.Last).Scan(&oldest); err != nil {
		return st, fmt.Errorf("oldest message: %w", err)
	}
	if oldest.Valid {
		st.oldest = oldest.Time
	}
	return st, nil
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
// deadLetterSQL; an empty text is NULL. Each id appears once, with its
// highest count and its latest non-empty text: UPDATE … FROM and DELETE …
// USING apply only one of the rows an id joins, unpredictably which, so a
// batch holding a message twice (released again while the previous UPDATE
// ran) could record the lower count.
func markArrays(marks []deliveryMark) (ids []int64, counts []int32, texts []*string) {
	at := make(map[int64]int, len(marks))
	for _, m := range marks {
		i, ok := at[m.id]
		if !ok {
			at[m.id] = len(ids)
			ids, counts, texts = append(ids, m.id), append(counts, 0), append(texts, nil)
			i = len(ids) - 1
		}
		counts[i] = max(counts[i], int32(min(m.deliveries, domain.MaxMaxDeliveries+1)))
		if m.text != "" {
			texts[i] = &m.text
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
