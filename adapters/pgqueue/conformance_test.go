package pgqueue

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/contract/queuetest"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// minLease is the shortest lease the conformance harness accepts.
const minLease = 200 * time.Millisecond

// newHarness builds a Queue with the default writer over a fresh database.
func newHarness(t testing.TB) queuetest.Harness { return harnessWith(DefaultWriterConfig())(t) }

// harnessWith builds Queues over a fresh database. Restart closes the queue
// without acking (as a redeployed process leaves things) and starts a new
// Writer and Reader, on a new pool, over the same database. Crash abandons
// the queue instead, never closed, and terminates its pool's connections (as
// a killed process leaves things) before starting the new one.
func harnessWith(wcfg WriterConfig) queuetest.NewHarness {
	return func(t testing.TB) queuetest.Harness { return newHarnessWith(t, wcfg, nil) }
}

// newHarnessWith is harnessWith; wrap, when set, wraps every queue it
// starts (a deliberately broken wrapper, for the meta-tests).
func newHarnessWith(t testing.TB, wcfg WriterConfig, wrap func(ports.Queue) ports.Queue) queuetest.Harness {
	dsn := pgtest.NewDatabase(t)
	type instance struct {
		q     *Queue
		port  ports.Queue // q, or wrap(q)
		crash func(testing.TB)
	}
	start := func() instance {
		pool, crash := pgtest.CrashablePool(t, dsn)
		q, err := NewQueue(pool, Config{
			Writer: wcfg,
			Reader: ReaderConfig{Range: fullRange(), MinLease: minLease, RefillInterval: 5 * time.Millisecond},
		}, nil, nil)
		require.NoError(t, err)
		require.NoError(t, q.Start(context.Background()))
		// Cancelled: a crashed queue's Close only stops its goroutines.
		t.Cleanup(func() { _ = q.Close(queuetest.CancelledContext()) })
		in := instance{q: q, port: q, crash: crash}
		if wrap != nil {
			in.port = wrap(q)
		}
		return in
	}
	current := start()
	return queuetest.Harness{
		Queue: current.port,
		Restart: func(t testing.TB) ports.Queue {
			queuetest.FlushHeld(t, current.port)
			require.NoError(t, current.q.Close(t.Context()))
			current = start()
			return current.port
		},
		Crash: func(t testing.TB) ports.Queue {
			current.crash(t)
			current = start()
			return current.port
		},
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, newHarness, conformanceCaps)
}

var conformanceCaps = queuetest.Capabilities{Durable: true, OrderedPerPartition: true, GivesBackAbandonedLeases: true, MinLease: minLease}

// TestConformanceOverBroken is the child TestSuiteCatchesLostCommits runs:
// the suite over queues inside the broken wrapper named by
// queuetest.BrokenVariant. In an ordinary run it has nothing to do.
func TestConformanceOverBroken(t *testing.T) {
	queuetest.RunOverBroken(t, func(t testing.TB, wrap func(ports.Queue) ports.Queue) queuetest.Harness {
		return newHarnessWith(t, DefaultWriterConfig(), wrap)
	}, conformanceCaps)
}

// TestSuiteCatchesLostCommits checks that the durability cases fail over a
// queue that answers a publish before committing it: a clean Restart
// flushes it (and passes, which is all the suite checked before), a Crash
// loses the messages.
func TestSuiteCatchesLostCommits(t *testing.T) {
	t.Parallel()
	queuetest.RequireCaught(t, "^TestConformanceOverBroken$/^DurablePublish$", queuetest.AnswerBeforeCommit,
		"--- PASS: TestConformanceOverBroken/DurablePublish/Restart",
		"--- FAIL: TestConformanceOverBroken/DurablePublish/Crash",
		"only 0 of 20 messages delivered")
}

// BenchmarkQueue runs the shared workload on the default writer and, for
// comparison, on one that flushes as soon as it is idle.
func BenchmarkQueue(b *testing.B) {
	queuetest.RunBenchmarks(b, newHarness)
	idle := DefaultWriterConfig()
	idle.FlushInterval = 0
	b.Run("FlushIdle", func(b *testing.B) { queuetest.RunBenchmarks(b, harnessWith(idle)) })
}
