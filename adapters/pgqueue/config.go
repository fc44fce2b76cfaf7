package pgqueue

import (
	"cmp"
	"fmt"
	"time"

	"github.com/gpufleet/telemetry/domain"
)

// WriterConfig tunes a Writer. Zero fields take the defaults of
// DefaultWriterConfig, except FlushInterval, whose zero is meaningful.
type WriterConfig struct {
	// BufferSize caps the messages accepted but not yet committed. A publish
	// that does not fit fails at once with ports.ErrBackpressure. Default 10000.
	BufferSize int
	// BufferBytes caps their payload bytes the same way (a publish larger
	// than the whole buffer fails with ports.ErrInvalidArgument). Default
	// 64 MiB.
	BufferBytes int64
	// MaxBatch caps the messages of one flush transaction. A publish is never
	// split across transactions, so a larger publish is flushed alone.
	// Default 1000.
	MaxBatch int
	// FlushInterval is the longest a message waits for others to share its
	// transaction. Zero flushes as soon as the writer has nothing more to
	// gather and a flusher is free (requests still batch while flushers are
	// busy). Default 2ms.
	FlushInterval time.Duration
	// Flushers is the number of flush transactions in flight at once.
	// Default 2.
	Flushers int
	// FlushTimeout bounds one flush transaction; its publishers then get
	// ports.ErrUnavailable. Default 30s.
	FlushTimeout time.Duration
}

// DefaultWriterConfig returns the defaults listed on WriterConfig.
func DefaultWriterConfig() WriterConfig {
	return WriterConfig{
		BufferSize:    10000,
		BufferBytes:   64 << 20,
		MaxBatch:      1000,
		FlushInterval: 2 * time.Millisecond,
		Flushers:      2,
		FlushTimeout:  30 * time.Second,
	}
}

func (c WriterConfig) withDefaults() (WriterConfig, error) {
	d := DefaultWriterConfig()
	c.BufferSize = cmp.Or(c.BufferSize, d.BufferSize)
	c.MaxBatch = cmp.Or(c.MaxBatch, d.MaxBatch)
	c.BufferBytes = cmp.Or(c.BufferBytes, d.BufferBytes)
	c.Flushers = cmp.Or(c.Flushers, d.Flushers)
	c.FlushTimeout = cmp.Or(c.FlushTimeout, d.FlushTimeout)
	switch {
	case c.BufferSize < 1, c.MaxBatch < 1, c.Flushers < 1, c.BufferBytes < 1:
		return c, fmt.Errorf("writer config: buffer size %d, max batch %d and flushers %d must be positive",
			c.BufferSize, c.MaxBatch, c.Flushers)
	case c.FlushInterval < 0, c.FlushTimeout < 0:
		return c, fmt.Errorf("writer config: flush interval %s and flush timeout %s must not be negative",
			c.FlushInterval, c.FlushTimeout)
	}
	return c, nil
}

// ReaderConfig tunes a Reader. Zero fields take the defaults of
// DefaultReaderConfig, except Range and DeleteInterval.
type ReaderConfig struct {
	// Range is the partitions this reader owns. Nil means none is assigned:
	// the reader serves nothing, Ready reports false, and Lease fails with
	// ports.ErrUnavailable.
	Range *domain.PartitionRange
	// BufferSize caps the messages held in memory per topic (ready, leased
	// and acked-but-not-yet-deleted). Default 10000.
	BufferSize int
	// RefillBatch caps the rows one refill loads. Default 2000.
	RefillBatch int
	// RefillInterval is how often a topic polls PostgreSQL for new rows
	// (a full refill) while the reader's listener is down, or always for a
	// reader that cannot listen (a pool of one). A refill that filled its
	// batch is followed at once by another. Default 50ms.
	RefillInterval time.Duration
	// FullRefillInterval is how often a topic refills in full (from its
	// first row, passing every held id) while the listener is up. Between
	// full refills a topic loads only from the lowest id announced to it:
	// by the writer's notifications, by its own expired leases, or by a
	// refill cut short by its batch (ADR 0016). The full refill finds what
	// nothing announced: rows inserted by other means than Writer, or
	// announced by a writer too old to say its ids. Default 1s.
	FullRefillInterval time.Duration
	// FastRefillInterval paces the refills something asked for: the next
	// one starts this long after the last one (or as long as the last one
	// took, if longer), so commits arriving faster share a refill and the
	// lease it feeds (ADR 0014). It also paces polling while the listener
	// is down and a lease waits (LeaseRequest.Wait). Default 10ms; never
	// longer than RefillInterval.
	FastRefillInterval time.Duration
	// DeleteBatch caps the message ids of one ack DELETE; acks that arrive
	// while a DELETE runs share the next one. Default 5000.
	DeleteBatch int
	// DeleteInterval is the longest an ack waits for others to share its
	// DELETE. Zero starts the DELETE as soon as none is in flight.
	DeleteInterval time.Duration
	// MinLease is the shortest lease accepted. Default 200ms.
	MinLease time.Duration
	// DrainTimeout bounds how long Drain waits for outstanding leases.
	// Default 30s.
	DrainTimeout time.Duration
	// QueryTimeout bounds one refill or delete statement. Default 30s.
	QueryTimeout time.Duration
	// MaxTopics caps the topics one reader serves; a lease on one more fails
	// with ports.ErrInvalidArgument. Default 64.
	MaxTopics int
	// MaxDeliveries is the delivery limit (MQ_MAX_DELIVERIES): a message
	// delivered that many times without an ack is moved to dead_letters
	// when its last lease ends, instead of being leased again. Zero means
	// domain.DefaultMaxDeliveries; bounds are domain.MaxDeliveriesOf's.
	MaxDeliveries int
	// Lease bounds one lease's max and duration; a larger request fails with
	// ports.ErrInvalidArgument naming the limit. Zero fields mean
	// domain.DefaultLeaseLimits (5,000 messages, 300 s).
	Lease domain.LeaseLimits
	// LeaseMaxBytes caps the payload bytes of one lease: a lease stops
	// adding messages before it would pass it (it always carries at least
	// one). Default 8 MiB.
	LeaseMaxBytes int
	// BufferBytes caps the payload bytes held in memory per topic, as
	// BufferSize caps the count; a refill loads no more than the room left.
	// The bound is exceeded by at most one message (a refill always keeps its
	// first row, so a message larger than the room left cannot stall its
	// partition). Default 64 MiB.
	BufferBytes int64
	// RefillBytes caps the payload bytes one refill keeps. Default 8 MiB.
	RefillBytes int
	// StatsInterval is how often each topic's backlog in PostgreSQL (rows
	// of this reader's partition range, counted up to BacklogCountCap) and
	// its oldest message are measured for the metrics. Default 15s.
	StatsInterval time.Duration
	// BacklogCountCap bounds the rows one backlog count visits; past it the
	// backlog is estimated from pg_class.reltuples. Default 100,000.
	BacklogCountCap int
}

// DefaultReaderConfig returns the defaults listed on ReaderConfig, with no
// range assigned.
func DefaultReaderConfig() ReaderConfig {
	return ReaderConfig{
		BufferSize:         10000,
		RefillBatch:        2000,
		RefillInterval:     50 * time.Millisecond,
		FullRefillInterval: time.Second,
		FastRefillInterval: 10 * time.Millisecond,
		DeleteBatch:        5000,
		MinLease:           200 * time.Millisecond,
		DrainTimeout:       30 * time.Second,
		QueryTimeout:       30 * time.Second,
		MaxTopics:          64,
		Lease:              domain.DefaultLeaseLimits(),
		LeaseMaxBytes:      DefaultLeaseMaxBytes,
		BufferBytes:        64 << 20,
		RefillBytes:        8 << 20,
		StatsInterval:      15 * time.Second,
		BacklogCountCap:    100_000,
		MaxDeliveries:      domain.DefaultMaxDeliveries,
	}
}

// DefaultLeaseMaxBytes is the default cap on one lease's payload bytes.
const DefaultLeaseMaxBytes = 8 << 20

func (c ReaderConfig) withDefaults() (ReaderConfig, error) {
	d := DefaultReaderConfig()
	c.BufferSize = cmp.Or(c.BufferSize, d.BufferSize)
	c.RefillBatch = cmp.Or(c.RefillBatch, d.RefillBatch)
	c.RefillInterval = cmp.Or(c.RefillInterval, d.RefillInterval)
	c.FullRefillInterval = cmp.Or(c.FullRefillInterval, d.FullRefillInterval)
	c.FastRefillInterval = cmp.Or(c.FastRefillInterval, d.FastRefillInterval)
	c.DeleteBatch = cmp.Or(c.DeleteBatch, d.DeleteBatch)
	c.MinLease = cmp.Or(c.MinLease, d.MinLease)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, d.DrainTimeout)
	c.QueryTimeout = cmp.Or(c.QueryTimeout, d.QueryTimeout)
	c.MaxTopics = cmp.Or(c.MaxTopics, d.MaxTopics)
	maxDeliveries, err := domain.MaxDeliveriesOf(c.MaxDeliveries)
	if err != nil {
		return c, fmt.Errorf("reader config: %w", err)
	}
	c.MaxDeliveries = maxDeliveries
	c.Lease = c.Lease.WithDefaults()
	c.LeaseMaxBytes = cmp.Or(c.LeaseMaxBytes, d.LeaseMaxBytes)
	c.BufferBytes = cmp.Or(c.BufferBytes, d.BufferBytes)
	c.RefillBytes = cmp.Or(c.RefillBytes, d.RefillBytes)
	c.StatsInterval = cmp.Or(c.StatsInterval, d.StatsInterval)
	c.BacklogCountCap = cmp.Or(c.BacklogCountCap, d.BacklogCountCap)
	if err := c.Lease.Validate(); err != nil {
		return c, fmt.Errorf("reader config: %w", err)
	}
	if c.Range != nil {
		if err := c.Range.Validate(); err != nil {
			return c, fmt.Errorf("reader config: %w", err)
		}
	}
	switch {
	case c.BufferSize < 1, c.RefillBatch < 1, c.DeleteBatch < 1, c.MaxTopics < 1:
		return c, fmt.Errorf("reader config: buffer size %d, refill batch %d, delete batch %d and max topics %d must be positive",
			c.BufferSize, c.RefillBatch, c.DeleteBatch, c.MaxTopics)
	case c.LeaseMaxBytes < 1, c.BufferBytes < 1, c.RefillBytes < 1, c.BacklogCountCap < 1:
		return c, fmt.Errorf("reader config: lease bytes %d, buffer bytes %d, refill bytes %d and backlog count cap %d must be positive",
			c.LeaseMaxBytes, c.BufferBytes, c.RefillBytes, c.BacklogCountCap)
	case c.RefillInterval < 0, c.FullRefillInterval < 0, c.FastRefillInterval < 0, c.DeleteInterval < 0, c.DrainTimeout < 0, c.QueryTimeout < 0, c.StatsInterval < 0,
		c.MinLease < 0 || c.MinLease > c.Lease.MaxDuration:
		return c, fmt.Errorf("reader config: intervals and timeouts must not be negative")
	}
	return c, nil
}

// Config configures a Queue: both sides over one pool.
type Config struct {
	Writer WriterConfig
	Reader ReaderConfig
}
