package ports

import (
	"context"
	"time"

	"github.com/gpufleet/telemetry/domain"
)

// WriteResult counts what a batch write did: Inserted rows are new;
// Duplicates were already stored under the same message UUID.
type WriteResult struct {
	Inserted   int
	Duplicates int
}

// TelemetryWriter persists telemetry. The collector depends on it.
type TelemetryWriter interface {
	// WriteBatch stores records atomically: all of them or none. A record
	// whose MsgUUID is already stored is a duplicate, not an error, so a
	// redelivered batch is harmless. It also keeps the GPU registry current
	// (hostname, index, device, model, last_seen). Errors: ErrInvalidArgument
	// for a record that can never be stored, ErrUnavailable when the store
	// cannot be reached.
	WriteBatch(ctx context.Context, records []domain.Record) (WriteResult, error)
	// WriteDeadLetters stores messages that can never be processed, with
	// their reason. A message already dead-lettered is ignored.
	WriteDeadLetters(ctx context.Context, letters []domain.DeadLetter) error
}

// Cursor is a keyset position in the (timestamp, id) order of a GPU's
// telemetry: a query with After returns rows strictly after it.
type Cursor struct {
	Timestamp time.Time
	ID        int64
}

// TelemetryQuery selects a GPU's telemetry in a time window.
type TelemetryQuery struct {
	GPUUUID string
	// Start and End bound the window, both inclusive; a zero time is unbounded.
	Start, End time.Time
	// MetricName, when set, keeps only that metric.
	MetricName string
	// Limit caps a page (Query only); it must be at least 1.
	Limit int
	// After resumes after a previous page's last row.
	After *Cursor
}

// TelemetryPage is one page of a query, in (timestamp, id) order. Next is set
// when more rows may follow; nil means the window is exhausted.
type TelemetryPage struct {
	Records []domain.Record
	Next    *Cursor
}

// TelemetryReader serves the API.
type TelemetryReader interface {
	// ListGPUs returns the GPU registry ordered by hostname, then GPU index,
	// then UUID. It never scans the telemetry table.
	ListGPUs(ctx context.Context) ([]domain.GPU, error)
	// QueryTelemetry returns one page. An unknown GPU fails with ErrNotFound;
	// a bad query (Limit < 1, End before Start) with ErrInvalidArgument.
	QueryTelemetry(ctx context.Context, q TelemetryQuery) (TelemetryPage, error)
	// StreamTelemetry calls fn for every matching row in order, ignoring
	// q.Limit, holding constant memory; it stops at fn's first error and
	// returns it. An unknown GPU fails with ErrNotFound before fn is called.
	StreamTelemetry(ctx context.Context, q TelemetryQuery, fn func(domain.Record) error) error
}

// TelemetryStore is the whole store.
type TelemetryStore interface {
	TelemetryWriter
	TelemetryReader
}
