package queuetest_test

import (
	"testing"
	"time"

	"github.com/gpufleet/telemetry/adapters/memory"
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
	queuetest.Run(t, func(t testing.TB) queuetest.Harness {
		q := memory.NewQueue(memory.QueueOptions{MinLease: memoryCaps.MinLease})
		t.Cleanup(q.Close)
		return queuetest.Harness{Queue: queuetest.Broken(variant, q)}
	}, memoryCaps)
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			queuetest.RequireCaught(t, "^TestSuiteOverBroken$/^"+tt.name+"$", tt.variant, tt.wants...)
		})
	}
}
