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

// conformanceToken is the token of the conformance chains: the suite runs
// with authentication on, as the apps do. One client publishes and
// consumes, so the server lists the token in both scopes.
const conformanceToken = "conformance-token-0123456789abcdef"

// newHarness is Client → HTTP (loopback) → Server → memory queue.
func newHarness(t testing.TB) queuetest.Harness {
	t.Helper()
	return newHarnessWith(t, mqhttp.ClientConfig{})
}

// newHarnessWith is newHarness with the client's options (Stream,
// StreamWindow) taken from base.
func newHarnessWith(t testing.TB, base mqhttp.ClientConfig) queuetest.Harness {
	t.Helper()
	quiet := quietLogger()
	q := memory.NewQueue(memory.QueueOptions{MinLease: time.Second, Logger: quiet})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	srv := httptest.NewServer(mqhttp.NewServer(q, q, mqhttp.ServerOptions{Logger: quiet,
		Auth: mqhttp.NewAuth(map[mqhttp.Scope][]string{mqhttp.ScopePublish: {conformanceToken}, mqhttp.ScopeConsume: {conformanceToken}})}).Handler())
	t.Cleanup(srv.Close)
	cfg := base
	cfg.WriterURL, cfg.ReaderURLs = srv.URL, []string{srv.URL}
	cfg.PublishToken, cfg.ConsumeToken = conformanceToken, conformanceToken
	c, err := mqhttp.NewClient(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return queuetest.Harness{Queue: c, DeadLetters: q}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, newHarness, queuetest.Capabilities{
		OrderedPerPartition: true,
		// The server gives back a lease whose request was cancelled before
		// the handler answered, but cannot tell whether a written response
		// reached a client that hung up: that lease waits for its expiry.
		GivesBackAbandonedLeases: false,
		// lease_seconds is whole seconds on the wire.
		MinLease: time.Second,
	})
}

// BenchmarkQueue runs the shared queue workload through the protocol over
// loopback, so its figures compare with memory's to show the HTTP cost.
func BenchmarkQueue(b *testing.B) {
	queuetest.RunBenchmarks(b, newHarness)
}
