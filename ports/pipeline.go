package ports

import (
	"context"
	"fmt"
	"time"

	"github.com/gpufleet/telemetry/domain"
)

// DeadLetterQuery selects one page of the dead letters, newest first.
type DeadLetterQuery struct {
	// Limit caps a page; it must be at least 1.
	Limit int
	// Before, when not 0, resumes a walk: only letters with an id below it
	// (a previous page's Next).
	Before int64
	// PayloadChars, when above 0, truncates each payload to that many
	// characters (StoredDeadLetter.PayloadBytes keeps the full size), so a
	// list of huge poison messages stays small.
	PayloadChars int
}

// Validate reports why q cannot be answered, wrapping ErrInvalidArgument.
func (q DeadLetterQuery) Validate() error {
	switch {
	case q.Limit < 1:
		return fmt.Errorf("limit %d is below 1: %w", q.Limit, ErrInvalidArgument)
	case q.Before < 0:
		return fmt.Errorf("before %d is negative: %w", q.Before, ErrInvalidArgument)
	case q.PayloadChars < 0:
		return fmt.Errorf("payload chars %d is negative: %w", q.PayloadChars, ErrInvalidArgument)
	}
	return nil
}

// StoredDeadLetter is a dead letter as stored: its id (increasing in the
// order letters were stored), when it was stored, and the letter, whose
// Payload may be truncated (PayloadBytes is the stored size).
type StoredDeadLetter struct {
	ID        int64
	CreatedAt time.Time
	domain.DeadLetter
	PayloadBytes int
}

// DeadLetterPage is one page of dead letters by id descending. Next is the
// Before of the following page, 0 when no letter follows.
type DeadLetterPage struct {
	Letters []StoredDeadLetter
	Next    int64
}

// HostSeen is one host of the GPU registry: how many GPUs it has and the
// newest last_seen among them.
type HostSeen struct {
	Hostname string
	GPUs     int
	LastSeen time.Time
}

// PipelineStats is a cheap snapshot of the pipeline's health as the store
// sees it. Counts that are unknown to a backend are -1.
type PipelineStats struct {
	// At is the store's clock when the snapshot was taken.
	At time.Time
	// SamplesInserted counts samples the store has inserted, cumulatively,
	// since a point the store chooses (its start, or the database's
	// statistics reset): only its rate of change means something. It may
	// lag by a few seconds and drop when old data is removed.
	SamplesInserted int64
	// QueueBacklog is how many messages wait in the durable queue (-1: the
	// store cannot see the queue), counted up to CountCap; Capped says the
	// real number is larger.
	QueueBacklog       int64
	QueueBacklogCapped bool
	// OldestQueued is when the oldest waiting message was published (nil:
	// none, or unknown).
	OldestQueued *time.Time
	// DeadLetters is how many dead letters are stored, counted up to
	// CountCap; DeadLettersCapped says the real number is larger.
	DeadLetters       int64
	DeadLettersCapped bool
	// Hosts are the registry's hosts by hostname.
	Hosts []HostSeen
}

// CountCap bounds the counts of PipelineStats, so a snapshot stays cheap
// however large a backlog grows.
const CountCap = 100_000

// PipelineReader serves the dashboard's pipeline view.
type PipelineReader interface {
	// ListDeadLetters returns one page of dead letters, newest first. A bad
	// query is ErrInvalidArgument.
	ListDeadLetters(ctx context.Context, q DeadLetterQuery) (DeadLetterPage, error)
	// PipelineStats returns a snapshot; it reads no more than a few index
	// pages and small tables, whatever the data's size.
	PipelineStats(ctx context.Context) (PipelineStats, error)
}
