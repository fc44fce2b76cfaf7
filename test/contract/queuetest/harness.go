// Package queuetest is the contract suite every ports.Queue adapter runs:
// one behaviour, every backend. An adapter's TestConformance calls Run with a
// constructor for a fresh, isolated instance and the capabilities it has;
// subtests use unique topics and run in parallel. RunBenchmarks measures
// every backend on the same workload.
package queuetest

import (
	"context"
	"testing"
	"time"

	"github.com/gpufleet/telemetry/ports"
)

// Harness is one fresh queue instance under test.
type Harness struct {
	// Queue is the queue under test.
	Queue ports.Queue
	// Restart, for durable adapters, stops the current instance cleanly
	// (Close, without acking) and returns a new one over the same durable
	// state. Nil when the adapter is not durable.
	Restart func(t testing.TB) ports.Queue
	// Crash, for durable adapters, stops the current instance as a crash
	// would: no Close, nothing flushed, its connections cut (e.g. with
	// pg_terminate_backend) and the abandoned instance unable to reach the
	// durable state again; it returns a new instance over that state. The
	// durability cases run once after Restart and once after Crash, and need
	// both. Nil when the adapter is not durable; a harness whose Restart
	// already is a crash sets both to it.
	Crash func(t testing.TB) ports.Queue
	// DeadLetters shows the dead letters of the queue under test (see
	// ports.DeadLetterReader). Nil means Queue implements it itself.
	DeadLetters ports.DeadLetterReader
}

// CancelledContext is a context that has already ended. A harness whose
// Crash abandons an instance closes it with this at cleanup, so that Close
// only stops its goroutines and flushes nothing.
func CancelledContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// Capabilities lists the allowed differences between adapters; a test that
// needs a missing capability is skipped with the reason.
type Capabilities struct {
	// Durable: messages whose publish returned survive Restart.
	Durable bool
	// OrderedPerPartition: a single consumer sees one partition's messages
	// in publish order.
	OrderedPerPartition bool
	// GivesBackAbandonedLeases: a Lease whose caller gave up (its context
	// ended) while the lease was being granted leaves no lease behind, so
	// its messages can be leased again at once rather than at the expiry.
	GivesBackAbandonedLeases bool
	// MinLease is the shortest lease the adapter accepts (e.g. 1s over HTTP);
	// expiry tests lease for it, and a lease for half of it must fail with
	// ports.ErrInvalidArgument. Zero means one second.
	MinLease time.Duration
	// MaxDeliveries is the delivery limit the harness's queues are
	// configured with. Zero means domain.DefaultMaxDeliveries.
	MaxDeliveries int
}

// NewHarness builds a fresh, isolated instance; it registers its own cleanup.
type NewHarness func(t testing.TB) Harness
