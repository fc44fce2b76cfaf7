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
// without acking (as a crashed or redeployed process would leave things) and
// starts a new Writer and Reader, on a new pool, over the same database.
func harnessWith(wcfg WriterConfig) queuetest.NewHarness {
	return func(t testing.TB) queuetest.Harness { return newHarnessWith(t, wcfg) }
}

func newHarnessWith(t testing.TB, wcfg WriterConfig) queuetest.Harness {
	dsn := pgtest.NewDatabase(t)
	start := func() ports.Queue {
		pool := pgtest.Pool(t, dsn)
		q, err := NewQueue(pool, Config{
			Writer: wcfg,
			Reader: ReaderConfig{Range: fullRange(), MinLease: minLease, RefillInterval: 5 * time.Millisecond},
		}, nil, nil)
		require.NoError(t, err)
		require.NoError(t, q.Start(context.Background()))
		t.Cleanup(func() { _ = q.Close(context.Background()) })
		return q
	}
	current := start()
	return queuetest.Harness{
		Queue: current,
		Restart: func(t testing.TB) ports.Queue {
			require.NoError(t, current.(*Queue).Close(t.Context()))
			current = start()
			return current
		},
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, newHarness, queuetest.Capabilities{Durable: true, OrderedPerPartition: true, GivesBackAbandonedLeases: true, MinLease: minLease})
}

// BenchmarkQueue runs the shared workload on the default writer and, for
// comparison, on one that flushes as soon as it is idle.
func BenchmarkQueue(b *testing.B) {
	queuetest.RunBenchmarks(b, newHarness)
	idle := DefaultWriterConfig()
	idle.FlushInterval = 0
	b.Run("FlushIdle", func(b *testing.B) { queuetest.RunBenchmarks(b, harnessWith(idle)) })
}
