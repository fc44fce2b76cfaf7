package ports

import (
	"context"
	"fmt"
	"time"

	"github.com/gpufleet/telemetry/domain"
)

// WriteResult counts what a batch write did: Inserted samples are new;
// Duplicates were already stored (same GPU, metric, attributes and
// timestamp: the natural key, see ADR 0004); Expired were older than the
// store's raw retention and were dropped, not stored (they would land in a
// partition retention already removed).
type WriteResult struct {
	Inserted   int
	Duplicates int
	Expired    int
}

// TelemetryWriter persists telemetry. The collector depends on it.
type TelemetryWriter interface {
	// WriteBatch stores records atomically: all of them or none. A record
	// whose sample is already stored (same series and timestamp) is a
	// duplicate, not an error, so a redelivered batch is harmless; the first
	// stored value wins. A record older than the raw retention is counted
	// as Expired and dropped. It also keeps the GPU registry current
	// (hostname, index, device, model, last_seen). Errors: ErrInvalidArgument
	// for a record that can never be stored, ErrUnavailable when the store
	// cannot be reached.
	WriteBatch(ctx context.Context, records []domain.Record) (WriteResult, error)
	// WriteDeadLetters stores messages that can never be processed, with
	// their reason. A message already dead-lettered is ignored.
	WriteDeadLetters(ctx context.Context, letters []domain.DeadLetter) error
}

// Cursor is a keyset position in the (timestamp, id) order of a GPU's
// telemetry, id being the sample's series id (unique per timestamp within a
// GPU): a query with After returns rows strictly after it.
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

// Validate checks q for a paged Query (paged: Limit must be at least 1) or a
// Stream (Limit ignored). Errors wrap ErrInvalidArgument. Every store calls
// it, so the rule has one home.
func (q TelemetryQuery) Validate(paged bool) error {
	switch {
	case q.GPUUUID == "":
		return fmt.Errorf("gpu uuid is empty: %w", ErrInvalidArgument)
	case paged && q.Limit < 1:
		return fmt.Errorf("limit %d is below 1: %w", q.Limit, ErrInvalidArgument)
	case !q.Start.IsZero() && !q.End.IsZero() && q.End.Before(q.Start):
		return fmt.Errorf("end %s is before start %s: %w", q.End.Format(time.RFC3339Nano), q.Start.Format(time.RFC3339Nano), ErrInvalidArgument)
	}
	return nil
}

// TelemetryPage is one page of a query, in (timestamp, id) order. Next is set
// when more rows may follow; nil means the window is exhausted.
type TelemetryPage struct {
	Records []domain.Record
	Next    *Cursor
}

// GPUCursor is a keyset position in the registry's (hostname, GPU index,
// UUID) order.
type GPUCursor struct {
	Hostname string
	GPUIndex int
	UUID     string
}

// GPUQuery selects GPUs of the registry.
type GPUQuery struct {
	// Hostname and ModelName, when set, keep only GPUs with exactly that value.
	Hostname, ModelName string
	// Limit caps a page; it must be at least 1.
	Limit int
	// After resumes after a previous page's last GPU.
	After *GPUCursor
}

// GPUPage is one page of the registry; Next is nil when no GPU follows.
type GPUPage struct {
	GPUs []domain.GPU
	Next *GPUCursor
}

// SeriesQuery asks for one metric of one GPU bucketed by Step over the
// inclusive window [Start, End]: bucket k starts at Start + k*Step.
type SeriesQuery struct {
	GPUUUID, MetricName string
	Start, End          time.Time
	Step                time.Duration
}

// MaxSeriesBuckets bounds the buckets of one series query.
const MaxSeriesBuckets = 10_000

// Validate reports why q cannot be answered, wrapping ErrInvalidArgument.
func (q SeriesQuery) Validate() error {
	n := domain.BucketCount(q.Start, q.End, q.Step)
	switch {
	case q.GPUUUID == "" || q.MetricName == "":
		return fmt.Errorf("gpu uuid and metric name are required: %w", ErrInvalidArgument)
	case q.Step < time.Microsecond:
		return fmt.Errorf("step %s is below 1µs: %w", q.Step, ErrInvalidArgument)
	case q.Start.IsZero() || q.End.IsZero():
		return fmt.Errorf("start and end are required: %w", ErrInvalidArgument)
	case q.End.Before(q.Start):
		return fmt.Errorf("end is before start: %w", ErrInvalidArgument)
	case n > MaxSeriesBuckets:
		return fmt.Errorf("%d buckets exceed %d: %w", n, MaxSeriesBuckets, ErrInvalidArgument)
	}
	return nil
}

// TelemetryReader serves the API.
type TelemetryReader interface {
	// ListGPUs returns the GPU registry ordered by hostname, then GPU index,
	// then UUID. It never scans the telemetry table.
	ListGPUs(ctx context.Context) ([]domain.GPU, error)
	// QueryGPUs returns one filtered page of the registry in ListGPUs'
	// order. Limit < 1 is ErrInvalidArgument.
	QueryGPUs(ctx context.Context, q GPUQuery) (GPUPage, error)
	// ListMetrics returns the metric names seen, by name, with how many
	// GPUs reported each. It never scans samples.
	ListMetrics(ctx context.Context) ([]domain.MetricSeen, error)
	// LatestValues returns the newest raw sample of each metric of a GPU,
	// by metric name (the value is nil when that sample was blank). An
	// unknown GPU is ErrNotFound.
	LatestValues(ctx context.Context, gpuUUID string) ([]domain.LatestValue, error)
	// QuerySeries buckets one metric of a GPU: every bucket of the window,
	// empty ones with Count 0. It reads 1-minute rollups when Step is a
	// whole number of minutes and Start is on a minute (a rolled-up bucket
	// then covers whole minutes, the minute holding End included), raw
	// samples otherwise. An unknown GPU is ErrNotFound; Step < 1µs, End
	// before Start or more than MaxSeriesBuckets buckets ErrInvalidArgument.
	QuerySeries(ctx context.Context, q SeriesQuery) (domain.Series, error)
	// FleetSummary summarises one metric over every GPU's latest sample
	// (domain.SummarizeFleet), with the topN highest; GPUs whose latest
	// sample is blank are left out.
	FleetSummary(ctx context.Context, metricName string, topN int) (domain.FleetSummary, error)
	// QueryTelemetry returns one page. An unknown GPU fails with ErrNotFound;
	// a bad query (Limit < 1, End before Start) with ErrInvalidArgument.
	QueryTelemetry(ctx context.Context, q TelemetryQuery) (TelemetryPage, error)
	// StreamTelemetry calls fn for every matching row in order, ignoring
	// q.Limit, holding constant memory; it stops at fn's first error and
	// returns it. An unknown GPU fails with ErrNotFound before fn is called.
	StreamTelemetry(ctx context.Context, q TelemetryQuery, fn func(domain.Record) error) error
	// PipelineReader lists dead letters and the pipeline's health for the
	// dashboard.
	PipelineReader
}

// MaintenanceReport says what one maintenance run did.
type MaintenanceReport struct {
	// Ran is false when another runner held the maintenance lock.
	Ran                                  bool
	PartitionsCreated, PartitionsDropped int
	RowsRolledUp                         int
	// RolledUpTo is the rollup watermark after the run: every minute
	// before it is rolled up (zero: nothing yet).
	RolledUpTo time.Time
}

// TelemetryMaintainer keeps the store's data lifecycle: partitions created
// ahead, raw samples and rollups past their retention dropped, 1-minute
// rollups brought up to now. Maintain is idempotent and safe to kill
// mid-way; concurrent callers (several collectors) are serialised so one
// runs and the others report Ran false.
type TelemetryMaintainer interface {
	Maintain(ctx context.Context, now time.Time) (MaintenanceReport, error)
}

// TelemetryStore is the whole store.
type TelemetryStore interface {
	TelemetryWriter
	TelemetryReader
	TelemetryMaintainer
}
