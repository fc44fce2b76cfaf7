package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/gpufleet/telemetry/adapters/nats"
	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	defaults := config{Host: "127.0.0.1", Port: 4223, StoreDir: ".local/nats", HTTPAddr: ":8086", LogLevel: "info"}
	withUsers := defaults
	withUsers.Users = []user{
		{Name: "publisher", Password: "p-secret", Publisher: true, Topics: []string{"telemetry", "audit"}},
		{Name: "consumer", Password: "c-secret"}}
	apptest.RunEnvCases(t, []apptest.EnvCase[config]{
		{Name: "defaults", Env: map[string]string{"MQ_AUTH": "none"}, Want: defaults},
		{Name: "set", Env: map[string]string{"NATS_ADDR": "0.0.0.0:4333", "NATS_STORE_DIR": "/data", "HTTP_ADDR": ":9", "LOG_LEVEL": "debug", "MQ_AUTH": "none"},
			Want: config{Host: "0.0.0.0", Port: 4333, StoreDir: "/data", HTTPAddr: ":9", LogLevel: "debug"}},
		{Name: "users", Env: map[string]string{"NATS_PUBLISHER_PASSWORD": "p-secret", "NATS_CONSUMER_PASSWORD": "c-secret", "QUEUE_TOPICS": "telemetry,audit"},
			Want: withUsers},
		{Name: "no passwords", WantErr: "NATS_PUBLISHER_PASSWORD[_FILE] and NATS_CONSUMER_PASSWORD[_FILE] are required"},
		{Name: "one user for both", Env: map[string]string{"NATS_PUBLISHER_PASSWORD": "p", "NATS_CONSUMER_PASSWORD": "c", "NATS_CONSUMER_USER": "publisher"},
			WantErr: "each role needs its own user"},
		{Name: "no port", Env: map[string]string{"NATS_ADDR": "127.0.0.1", "MQ_AUTH": "none"}, WantErr: "NATS_ADDR"},
		{Name: "port out of range", Env: map[string]string{"NATS_ADDR": "127.0.0.1:70000"}, WantErr: "NATS_ADDR"},
		{Name: "bad log level", Env: map[string]string{"LOG_LEVEL": "loud"}, WantErr: "LOG_LEVEL"},
	}, loadConfig)
}

func TestServerOptions(t *testing.T) {
	t.Parallel()
	opts := serverOptions(config{Host: "127.0.0.1", Port: 0, StoreDir: "/data"})
	require.True(t, opts.JetStream, "JetStream on")
	require.True(t, opts.SyncAlways, "fsync every write")
	require.Zero(t, opts.HTTPPort, "monitoring off")
	require.Equal(t, -1, opts.Port, "port 0 means a free port, not nats-server's 4222")
	require.True(t, opts.NoSigs, "natsd handles signals")
	require.False(t, serverOptions(config{LazySync: true}).SyncAlways, "NATS_SYNC=default: JetStream's own fsync interval")
}

// TestServerOptionsHashPasswords: the server gets bcrypt hashes, never the
// plaintext, except for a password bcrypt cannot take (over 72 bytes).
func TestServerOptionsHashPasswords(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 73)
	opts := serverOptions(config{Users: []user{{Name: "publisher", Password: "p-secret", Publisher: true}, {Name: "consumer", Password: long}}})
	require.Len(t, opts.Users, 2)
	require.NotEqual(t, "p-secret", opts.Users[0].Password)
	require.NoError(t, bcrypt.CompareHashAndPassword([]byte(opts.Users[0].Password), []byte("p-secret")))
	require.Equal(t, long, opts.Users[1].Password, "too long for bcrypt: passed as it is")
}

// TestRun starts natsd on free ports, uses JetStream through it, checks its
// health endpoints, and stops it; then starts it again on the same store and
// finds the stream.
func TestRun(t *testing.T) {
	t.Parallel()
	cfg := config{Host: "127.0.0.1", StoreDir: t.TempDir(), HTTPAddr: "127.0.0.1:0"}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	for round := range 2 {
		ctx, cancel := context.WithCancel(t.Context())
		type addrs struct{ nats, http string }
		ready := make(chan addrs, 1)
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, cfg, logger, func(n, h string) { ready <- addrs{n, h} })
		}()
		var a addrs
		select {
		case a = <-ready:
		case err := <-done:
			cancel()
			require.FailNow(t, "natsd stopped before ready", "%v", err)
		}

		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			resp, err := http.Get("http://" + a.http + path)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			require.Equal(t, http.StatusOK, resp.StatusCode, path)
		}

		nc, err := natsgo.Connect(a.nats)
		require.NoError(t, err)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		if round == 0 {
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "probe", Subjects: []string{"probe.*"}})
			require.NoError(t, err)
			_, err = js.Publish(ctx, "probe.1", []byte(`{}`))
			require.NoError(t, err)
		} else {
			s, err := js.Stream(ctx, "probe")
			require.NoError(t, err, "stream kept on the store dir")
			info, err := s.Info(ctx)
			require.NoError(t, err)
			require.Equal(t, uint64(1), info.State.Msgs)
		}
		nc.Close()

		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			require.FailNow(t, "natsd did not stop")
		}
	}
}

// startNatsd runs natsd with cfg until the test ends and returns its NATS URL.
func startNatsd(t *testing.T, cfg config) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(n, _ string) { ready <- n })
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case u := <-ready:
		return u
	case err := <-done:
		require.FailNow(t, "natsd stopped before ready", "%v", err)
		return ""
	}
}

// TestUsers: the publisher user publishes and cannot consume, the consumer
// user consumes and cannot publish, and nobody connects without a user —
// through the queue adapter the streamer and collector use.
func TestUsers(t *testing.T) {
	t.Parallel()
	cfg := config{Host: "127.0.0.1", StoreDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Users: []user{
		{Name: "publisher", Password: "publisher-secret-0123456789", Publisher: true, Topics: []string{"telemetry"}},
		{Name: "consumer", Password: "consumer-secret-0123456789"},
	}}
	url := startNatsd(t, cfg)
	ctx := t.Context()
	queue := func(name, password string) *nats.Queue {
		q, err := nats.New(ctx, nats.Config{URL: url, User: name, Password: password, AckWait: 5 * time.Second},
			slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		require.NoError(t, err)
		require.NoError(t, q.Start(ctx))
		t.Cleanup(func() { _ = q.Close() })
		return q
	}
	pub := queue("publisher", "publisher-secret-0123456789")
	cons := queue("consumer", "consumer-secret-0123456789")
	msg := []ports.OutgoingMessage{{Payload: []byte(`{"gpu_uuid":"GPU-1"}`), Key: "GPU-1"}}
	leaseReq := ports.LeaseRequest{Topic: "telemetry", ConsumerID: "c", Max: 10, LeaseDuration: 5 * time.Second}

	_, err := pub.Publish(ctx, "telemetry", msg)
	require.NoError(t, err, "the publisher publishes")
	var lease domain.Lease
	require.Eventually(t, func() bool {
		lease, err = cons.Lease(ctx, leaseReq)
		require.NoError(t, err, "the consumer leases")
		return len(lease.Messages) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, cons.Ack(ctx, ports.LeaseRef{Topic: "telemetry", ConsumerID: "c", LeaseID: lease.ID}))

	// The server refuses at once what the permissions leave out ("-ERR
	// Permissions Violation", before the PONG a Flush waits for); through
	// the queue a refused publish is only a missing ack, so those calls get
	// a short context of their own.
	publishRaw := func(name, password, subject string) error {
		nc, err := natsgo.Connect(url, natsgo.UserInfo(name, password), natsgo.MaxReconnects(0))
		require.NoError(t, err)
		defer nc.Close()
		require.NoError(t, nc.Publish(subject, []byte(`{}`)))
		require.NoError(t, nc.Flush())
		return nc.LastError()
	}
	require.NoError(t, publishRaw("publisher", "publisher-secret-0123456789", "telemetry.0"))
	require.ErrorContains(t, publishRaw("publisher", "publisher-secret-0123456789", "other.0"), "Permissions Violation",
		"the publisher may publish only to the configured topics")
	require.ErrorContains(t, publishRaw("consumer", "consumer-secret-0123456789", "telemetry.0"), "Permissions Violation",
		"the consumer may not publish")
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		t.Cleanup(cancel)
		return c
	}
	_, err = cons.Publish(short(), "telemetry", msg)
	require.Error(t, err, "the consumer may not publish")
	_, err = pub.Publish(short(), "other", msg)
	require.Error(t, err, "the publisher may publish only to the configured topics")
	l, err := pub.Lease(short(), leaseReq)
	require.True(t, err != nil || len(l.Messages) == 0, "the publisher may not consume")

	_, err = natsgo.Connect(url, natsgo.MaxReconnects(0))
	require.Error(t, err, "no user, no connection")
	_, err = natsgo.Connect(url, natsgo.UserInfo("publisher", "guess"), natsgo.MaxReconnects(0))
	require.Error(t, err, "a wrong password, no connection")
}
