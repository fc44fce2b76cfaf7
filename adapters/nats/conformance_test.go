package nats_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	natsq "github.com/gpufleet/telemetry/adapters/nats"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/contract/queuetest"
)

// newHarness runs each subtest on its own in-process server, so Restart can
// crash and restart it: the server is shut down first (the old client's
// Naks no longer reach it, so leased messages come back only through the
// server's AckWait, as after a crash), then the old client is closed and a
// new one connects to a server started on the same store directory.
//
// With NATS_URL set, subtests share that server under a prefix of their own,
// and Restart restarts only the client: a server this test did not start
// cannot be restarted by it.
func newHarness(t testing.TB) queuetest.Harness { return harness(t, false) }

// harness is newHarness; intervalSync runs the in-process server with
// JetStream's default fsync interval instead of SyncAlways.
func harness(t testing.TB, intervalSync bool) queuetest.Harness {
	if url := externalURL(); url != "" {
		cfg := natsq.Config{StreamPrefix: uniquePrefix(t, url)}
		q := newQueue(t, url, cfg, nil)
		restart := func(t testing.TB) ports.Queue {
			require.NoError(t, q.Close())
			q = newQueue(t, url, cfg, nil)
			return q
		}
		// Crash is Restart: the client keeps no state of its own to lose.
		return queuetest.Harness{Queue: q, Restart: restart, Crash: restart}
	}
	ts := startServerSync(t, intervalSync)
	q := newQueue(t, ts.url(), natsq.Config{}, nil)
	crash := func(t testing.TB) ports.Queue {
		ts.shutdown()
		require.NoError(t, q.Close(), "close with the server down")
		ts.start(t)
		q = newQueue(t, ts.url(), natsq.Config{}, nil)
		return q
	}
	// Restart is already a crash (the server goes down first).
	return queuetest.Harness{Queue: q, Restart: crash, Crash: crash}
}

// TestConformance runs the queue contract. Capabilities:
//   - Durable: streams are file-backed (fsync on every write in the
//     in-process server) and survive a server restart.
//   - OrderedPerPartition: one consumer fetches in stream order, which is
//     the order of the PubAcks; redelivered messages come first.
//   - MinLease: 1s (natsq.MinLease); lease expiry is kept by the client.
func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, newHarness, queuetest.Capabilities{
		Durable:             true,
		OrderedPerPartition: true,
		// A fetch cancelled after the server delivered leaves those
		// messages in flight until AckWait, as JetStream does.
		GivesBackAbandonedLeases: false,
		MinLease:                 natsq.MinLease,
	})
}

// BenchmarkQueue runs the shared queue workload against an in-process server
// that fsyncs every write (or NATS_URL): the configuration whose durability
// matches the port's promise.
func BenchmarkQueue(b *testing.B) {
	queuetest.RunBenchmarks(b, newHarness)
}

// BenchmarkQueueIntervalSync runs the same workload with JetStream's default
// fsync every 2 minutes, which can lose acknowledged writes on power loss:
// the difference is the price of SyncAlways.
func BenchmarkQueueIntervalSync(b *testing.B) {
	if externalURL() != "" {
		b.Skip("NATS_URL set: the external server's sync setting is its own")
	}
	queuetest.RunBenchmarks(b, func(t testing.TB) queuetest.Harness { return harness(t, true) })
}
