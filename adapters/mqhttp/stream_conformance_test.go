package mqhttp_test

import (
	"testing"
	"time"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/test/contract/queuetest"
)

// newStreamHarness is newHarness with Publish on the streaming path.
func newStreamHarness(t testing.TB) queuetest.Harness {
	t.Helper()
	return newHarnessWith(t, mqhttp.ClientConfig{Stream: true})
}

// TestConformanceOverStream runs the queue contract with every publish on
// the streaming path, over the memory queue.
func TestConformanceOverStream(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, newStreamHarness, queuetest.Capabilities{
		OrderedPerPartition: true,
		MinLease:            time.Second,
	})
}

// TestConformanceOverStreamToPGQueue runs it over the production chain:
// durability across restarts and crashes, with the stream reconnecting.
func TestConformanceOverStreamToPGQueue(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t testing.TB) queuetest.Harness {
		return newPGChainHarnessWith(t, nil, mqhttp.ClientConfig{Stream: true})
	}, pgChainCaps)
}

// BenchmarkQueueOverStream is BenchmarkQueue with publishes on the stream.
func BenchmarkQueueOverStream(b *testing.B) {
	queuetest.RunBenchmarks(b, newStreamHarness)
}
