package pgqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

var (
	_ ports.Queue            = (*Queue)(nil)
	_ ports.Checker          = (*Queue)(nil)
	_ ports.DeadLetterReader = (*Queue)(nil)
)

// Queue is a whole queue over one pool: a Writer and a Reader. It serves
// tests and the single-process mode; the mqwriter and mqreader apps use the
// halves.
type Queue struct {
	writer *Writer
	reader *Reader
}

// NewQueue builds a Writer and a Reader over pool; Start starts both. A nil
// logger means slog.Default(); a nil registerer leaves the metrics
// unregistered.
func NewQueue(pool *pgxpool.Pool, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Queue, error) {
	w, err := NewWriter(pool, cfg.Writer, logger, reg)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(pool, cfg.Reader, logger, reg)
	if err != nil {
		return nil, errors.Join(err, w.Close(context.Background()))
	}
	return NewQueueOf(w, r), nil
}

// NewQueueOf composes a Writer and a Reader; closing the Queue closes both.
func NewQueueOf(w *Writer, r *Reader) *Queue { return &Queue{writer: w, reader: r} }

// Start starts the writer and the reader.
func (q *Queue) Start(ctx context.Context) error {
	return errors.Join(q.writer.Start(ctx), q.reader.Start(ctx))
}

// Writer is the queue's write side.
func (q *Queue) Writer() *Writer { return q.writer }

// Reader is the queue's read side.
func (q *Queue) Reader() *Reader { return q.reader }

// Publish implements ports.Publisher (see Writer.Publish).
func (q *Queue) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	return q.writer.Publish(ctx, topic, msgs)
}

// Lease implements ports.Consumer (see Reader.Lease).
func (q *Queue) Lease(ctx context.Context, req ports.LeaseRequest) (domain.Lease, error) {
	return q.reader.Lease(ctx, req)
}

// Ack implements ports.Consumer (see Reader.Ack).
func (q *Queue) Ack(ctx context.Context, ref ports.LeaseRef) error { return q.reader.Ack(ctx, ref) }

// Release implements ports.Consumer (see Reader.Release).
func (q *Queue) Release(ctx context.Context, ref ports.LeaseRef) error {
	return q.reader.Release(ctx, ref)
}

// DeadLetters implements ports.DeadLetterReader (see Reader.DeadLetters).
func (q *Queue) DeadLetters(ctx context.Context, topic string, limit int) ([]domain.DeadLetter, error) {
	return q.reader.DeadLetters(ctx, topic, limit)
}

// Check reports whether both sides can serve.
func (q *Queue) Check(ctx context.Context) error {
	return errors.Join(q.writer.Check(ctx), q.reader.Check(ctx))
}

// Close stops the reader without waiting for leases (see Reader.Close), then
// commits what the writer buffered and stops it.
func (q *Queue) Close(ctx context.Context) error {
	if err := errors.Join(q.reader.Close(ctx), q.writer.Close(ctx)); err != nil {
		return fmt.Errorf("close queue: %w", err)
	}
	return nil
}
