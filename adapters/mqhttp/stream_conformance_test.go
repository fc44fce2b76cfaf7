package mqhttp_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/test/contract/queuetest"
)

// newStreamHarness is newHarness with Publish on the streaming path.
func newStreamHarness(t testing.TB) queuetest.Harness {
	t.Helper()
	quiet := quietLogger()
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second, Logger: quiet})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	srv := httptest.NewServer(mqhttp.NewServer(q, q, mqhttp.ServerOptions{Logger: quiet,
		Auth: mqhttp.NewAuth(map[mqhttp.Scope][]string{mqhttp.ScopePublish: {conformanceToken}, mqhttp.ScopeConsume: {conformanceToken}})}).Handler())
	t.Cleanup(srv.Close)
	c, err := mqhttp.NewClient(mqhttp.ClientConfig{WriterURL: srv.URL, ReaderURLs: []string{srv.URL}, Stream: true,
		PublishToken: conformanceToken, ConsumeToken: conformanceToken})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return queuetest.Harness{Queue: c, DeadLetters: q}
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
