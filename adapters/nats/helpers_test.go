package nats_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	natsq "github.com/gpufleet/telemetry/adapters/nats"
	"github.com/gpufleet/telemetry/test/freeport"
)

// testAckWait is the consumers' AckWait in tests: half the suite's 20s
// wait, so a crashed client's messages come back within it. Not less: a
// live lease's messages stay with it only while its InProgress (every
// AckWait/2) or its ack reaches the server within AckWait of the fetch, and
// at 5s a loaded machine (make test at -p 4 -parallel 8) once let 2.5s pass,
// so the server redelivered a message still leased (ConcurrentConsumers).
const testAckWait = 10 * time.Second

// testServer is an in-process NATS server with JetStream on a directory that
// survives its restarts, fsyncing every write as apps/natsd does.
type testServer struct {
	dir          string
	port         int            // the same for every start, so clients reconnect to a restart
	intervalSync bool           // JetStream's default fsync every 2 minutes instead of SyncAlways (benchmarks only)
	srv          *server.Server // the running server; owned by the test goroutine
}

// startServer starts a server on a fresh directory and a random port; it is
// shut down when the test ends.
func startServer(t testing.TB) *testServer {
	t.Helper()
	return startServerSync(t, false)
}

// startServerSync is startServer; intervalSync selects JetStream's default
// fsync interval, to measure what SyncAlways costs.
func startServerSync(t testing.TB, intervalSync bool) *testServer {
	t.Helper()
	port, err := freeport.Port() // below the ephemeral range, so no client's source port takes it while the server is down
	require.NoError(t, err)
	ts := &testServer{dir: t.TempDir(), port: port, intervalSync: intervalSync}
	ts.start(t)
	t.Cleanup(ts.shutdown)
	return ts
}

func (ts *testServer) start(t testing.TB) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host:       "127.0.0.1",
		Port:       ts.port,
		JetStream:  true,
		StoreDir:   ts.dir,
		SyncAlways: !ts.intervalSync,
		NoLog:      true,
		NoSigs:     true,
	})
	require.NoError(t, err)
	srv.Start() // does not block
	require.True(t, srv.ReadyForConnections(10*time.Second), "nats server not ready")
	ts.srv = srv
}

func (ts *testServer) url() string { return ts.srv.ClientURL() }

// shutdown stops the server and waits for it: to its clients it is a crash.
func (ts *testServer) shutdown() {
	ts.srv.Shutdown()
	ts.srv.WaitForShutdown()
}

// restart stops the server and starts a new one on the same directory and port.
func (ts *testServer) restart(t testing.TB) {
	t.Helper()
	ts.shutdown()
	ts.start(t)
}

// newQueue connects a Queue with the tests' AckWait (unless cfg says
// otherwise); it is closed when the test ends.
func newQueue(t testing.TB, url string, cfg natsq.Config, reg prometheus.Registerer) *natsq.Queue {
	t.Helper()
	cfg.URL = url
	if cfg.AckWait == 0 {
		cfg.AckWait = testAckWait
	}
	q, err := natsq.New(t.Context(), cfg, testLogger(t), reg)
	require.NoError(t, err)
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// externalURL is NATS_URL: tests then run against that server instead of
// in-process ones.
func externalURL() string { return os.Getenv("NATS_URL") }

// uniquePrefix is a stream prefix of its own for a test on a shared external
// server; its streams are deleted when the test ends.
func uniquePrefix(t testing.TB, url string) string {
	t.Helper()
	prefix := fmt.Sprintf("tqtest-%x", uuid.New().ID())
	t.Cleanup(func() {
		nc, err := natsgo.Connect(url)
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		names := js.StreamNames(ctx)
		var ours []string
		for name := range names.Name() {
			if strings.HasPrefix(name, prefix+"_") {
				ours = append(ours, name)
			}
		}
		for _, name := range ours {
			_ = js.DeleteStream(ctx, name)
		}
	})
	return prefix
}

// testLogger writes the queue's warnings to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
