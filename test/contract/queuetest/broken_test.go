package queuetest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/contract/queuetest"
)

// memoryCaps are the memory queue's capabilities, as its TestConformance
// declares them.
var memoryCaps = queuetest.Capabilities{OrderedPerPartition: true, GivesBackAbandonedLeases: true, MinLease: 50 * time.Millisecond}

// TestSuiteOverBroken is the child TestSuiteCatchesBrokenQueues runs: the
// suite over the memory queue inside the broken wrapper named by
// BrokenVariant. In an ordinary run it has nothing to do.
func TestSuiteOverBroken(t *testing.T) {
	variant := queuetest.BrokenVariant()
	if variant == "" {
		return
	}
	queuetest.Run(t, brokenMemory(variant), memoryCaps)
}

// BenchmarkOverBroken is the child TestBenchmarksCatchBrokenQueues runs.
func BenchmarkOverBroken(b *testing.B) {
	variant := queuetest.BrokenVariant()
	if variant == "" {
		b.Skip("run by TestBenchmarksCatchBrokenQueues")
	}
	queuetest.RunBenchmarks(b, brokenMemory(variant))
}

// brokenMemory builds memory queues inside the named broken wrapper.
func brokenMemory(variant string) queuetest.NewHarness {
	return func(t testing.TB) queuetest.Harness {
		opts := memory.QueueOptions{MinLease: memoryCaps.MinLease}
		if variant == queuetest.NoDeliveryLimit {
			opts.MaxDeliveries = domain.MaxMaxDeliveries
		}
		q := memory.NewQueue(opts)
		require.NoError(t, q.Start(t.Context()))
		t.Cleanup(q.Close)
		return queuetest.Harness{Queue: queuetest.Broken(variant, q), DeadLetters: q}
	}
}

// TestBenchmarksCatchBrokenQueues checks that every benchmark fails over a
// queue that stores nothing (each reported its msgs/s over it before).
func TestBenchmarksCatchBrokenQueues(t *testing.T) {
	t.Parallel()
	queuetest.RequireBenchCaught(t, "^BenchmarkOverBroken$", queuetest.StoreNothing,
		"--- FAIL: BenchmarkOverBroken/Publish/1msg",
		"--- FAIL: BenchmarkOverBroken/Publish/100msgs",
		"--- FAIL: BenchmarkOverBroken/LeaseAck/max100",
		"publishes answered 0 accepted and 1 duplicates for 1 distinct messages")
}

// TestSuiteSurvivesExpiredAcks checks that the cases acking short leases
// pass when a lease expires before its ack, as a loaded machine makes it
// (DeliveryLimit failed with "lease expired" in a busy make test run).
func TestSuiteSurvivesExpiredAcks(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"AckRemovesForGood", "DeliveryLimit"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			queuetest.RequireSurvives(t, "^TestSuiteOverBroken$/^"+name+"$", queuetest.ExpireFirstAck,
				"--- PASS: TestSuiteOverBroken/"+name, "expired before its ack")
		})
	}
}

// TestSuiteCatchesBrokenQueues checks that each case fails over the wrapper
// that breaks the promise it states (each passed over it before it was
// sharpened).
func TestSuiteCatchesBrokenQueues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, variant string
		wants         []string
	}{
		{"AckRemovesForGood", queuetest.AckDeletesNothing,
			[]string{"--- FAIL: TestSuiteOverBroken/AckRemovesForGood", "acked message delivered again"}},
		{"CancelledContext", queuetest.PublishDespiteCancel,
			[]string{"--- FAIL: TestSuiteOverBroken/CancelledContext", "a publish with a cancelled context stored messages"}},
		{"DeliveryLimit", queuetest.NoDeliveryLimit,
			[]string{"--- FAIL: TestSuiteOverBroken/DeliveryLimit", "message leased again after 5 deliveries"}},
		{"WaitingLeaseReceivesLaterPublish", queuetest.IgnoreWait,
			[]string{"--- FAIL: TestSuiteOverBroken/WaitingLeaseReceivesLaterPublish",
				"a waiting lease returned without the message published within its wait"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			queuetest.RequireCaught(t, "^TestSuiteOverBroken$/^"+tt.name+"$", tt.variant, tt.wants...)
		})
	}
}
