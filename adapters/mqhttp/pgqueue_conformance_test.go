package mqhttp_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/contract/queuetest"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// pgChainCaps are the production chain's capabilities: the PostgreSQL
// queue's durability and order, the protocol's whole-second leases, and, as
// over the memory queue, no give-back of a lease whose client hung up.
var pgChainCaps = queuetest.Capabilities{
	Durable:             true,
	OrderedPerPartition: true,
	MinLease:            time.Second,
}

// newPGChainHarness is the production chain: Client → HTTP (loopback) →
// a writer Server over pgqueue.Writer and a reader Server over
// pgqueue.Reader, each on its own pool as mqwriter and mqreader are, over a
// fresh database. Restart closes them all (without acking) and starts new
// ones; Crash abandons the writer and reader unclosed with their
// connections terminated, as killed mqwriter and mqreader processes would.
// wrap, when set, wraps the queue the servers serve (a broken wrapper, for
// the meta-test).
func newPGChainHarness(t testing.TB, wrap func(ports.Queue) ports.Queue) queuetest.Harness {
	t.Helper()
	return newPGChainHarnessWith(t, wrap, mqhttp.ClientConfig{})
}

// newPGChainHarnessWith is newPGChainHarness with the client's options
// (Stream, StreamWindow) taken from base.
func newPGChainHarnessWith(t testing.TB, wrap func(ports.Queue) ports.Queue, base mqhttp.ClientConfig) queuetest.Harness {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	all := domain.PartitionRange{First: 0, Last: domain.NumPartitions - 1}
	type chain struct {
		q       *pgqueue.Queue
		served  ports.Queue // q, or wrap(q)
		client  *mqhttp.Client
		servers []*httptest.Server
		crashes []func(testing.TB)
	}
	start := func() *chain {
		quiet := quietLogger()
		wpool, wcrash := pgtest.CrashablePool(t, dsn)
		rpool, rcrash := pgtest.CrashablePool(t, dsn)
		w, err := pgqueue.NewWriter(wpool, pgqueue.DefaultWriterConfig(), quiet, nil)
		require.NoError(t, err)
		r, err := pgqueue.NewReader(rpool, pgqueue.ReaderConfig{Range: &all, MinLease: time.Second, RefillInterval: 5 * time.Millisecond}, quiet, nil)
		require.NoError(t, err)
		q := pgqueue.NewQueueOf(w, r)
		require.NoError(t, q.Start(context.Background()))
		// Cancelled: a crashed queue's Close only stops its goroutines.
		t.Cleanup(func() { _ = q.Close(queuetest.CancelledContext()) })
		c := &chain{q: q, served: q, crashes: []func(testing.TB){wcrash, rcrash}}
		if wrap != nil {
			c.served = wrap(q)
		}
		// Authentication on, as in the apps: the writer knows only publish
		// tokens and the reader only consume tokens.
		writer := httptest.NewServer(mqhttp.NewServer(c.served, nil, mqhttp.ServerOptions{Logger: quiet,
			Auth: mqhttp.NewAuth(map[mqhttp.Scope][]string{mqhttp.ScopePublish: {conformanceToken}})}).Handler())
		reader := httptest.NewServer(mqhttp.NewServer(nil, c.served, mqhttp.ServerOptions{Logger: quiet,
			Auth: mqhttp.NewAuth(map[mqhttp.Scope][]string{mqhttp.ScopeConsume: {conformanceToken}})}).Handler())
		c.servers = []*httptest.Server{writer, reader}
		t.Cleanup(writer.Close)
		t.Cleanup(reader.Close)
		cfg := base
		cfg.WriterURL, cfg.ReaderURLs = writer.URL, []string{reader.URL}
		cfg.PublishToken, cfg.ConsumeToken = conformanceToken, conformanceToken
		c.client, err = mqhttp.NewClient(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.client.Close() })
		return c
	}
	// stopServers stops the HTTP side of a chain and its client.
	stopServers := func(t testing.TB, c *chain) {
		for _, s := range c.servers {
			// The listener first: a client that reconnected between the
			// drop and Close would hold an active stream, and Close
			// waits for those.
			_ = s.Listener.Close()
			s.CloseClientConnections()
			s.Close()
		}
		require.NoError(t, c.client.Close())
	}
	current := start()
	// The queue's dead letters, read from the database as an operator
	// would: the protocol does not serve them.
	dlPool := pgtest.Pool(t, dsn)
	return queuetest.Harness{
		Queue:       current.client,
		DeadLetters: pgqueue.NewDeadLetterReader(dlPool),
		Restart: func(t testing.TB) ports.Queue {
			stopServers(t, current)
			queuetest.FlushHeld(t, current.served)
			require.NoError(t, current.q.Close(t.Context()))
			current = start()
			return current.client
		},
		Crash: func(t testing.TB) ports.Queue {
			for _, crash := range current.crashes {
				crash(t)
			}
			stopServers(t, current)
			current = start()
			return current.client
		},
	}
}

// TestConformanceOverPGQueue runs the contract over the production chain,
// which the memory-backed TestConformance cannot: durability across
// restarts and crashes, PostgreSQL's errors through the protocol.
func TestConformanceOverPGQueue(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t testing.TB) queuetest.Harness { return newPGChainHarness(t, nil) }, pgChainCaps)
}

// TestConformanceOverBrokenPGQueue is the child TestPGChainCatchesLostCommits
// runs: the chain with the servers' queue inside the broken wrapper named
// by queuetest.BrokenVariant. In an ordinary run it has nothing to do.
func TestConformanceOverBrokenPGQueue(t *testing.T) {
	queuetest.RunOverBroken(t, newPGChainHarness, pgChainCaps)
}

// TestPGChainCatchesLostCommits checks that servers answering a publish
// before their queue commits it fail over the PostgreSQL chain; over the
// memory chain (not durable) the suite cannot tell.
func TestPGChainCatchesLostCommits(t *testing.T) {
	t.Parallel()
	queuetest.RequireCaught(t, "^TestConformanceOverBrokenPGQueue$/^DurablePublish$", queuetest.AnswerBeforeCommit,
		"--- FAIL: TestConformanceOverBrokenPGQueue/DurablePublish/Crash",
		"only 0 of 20 messages delivered")
}
