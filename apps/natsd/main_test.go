package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/platform"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    config
		wantErr string
	}{
		{"defaults", nil,
			config{Host: "127.0.0.1", Port: 4223, StoreDir: ".local/nats", HTTPAddr: ":8086", LogLevel: "info"}, ""},
		{"set", map[string]string{"NATS_ADDR": "0.0.0.0:4333", "NATS_STORE_DIR": "/data", "HTTP_ADDR": ":9", "LOG_LEVEL": "debug"},
			config{Host: "0.0.0.0", Port: 4333, StoreDir: "/data", HTTPAddr: ":9", LogLevel: "debug"}, ""},
		{"no port", map[string]string{"NATS_ADDR": "127.0.0.1"}, config{}, "NATS_ADDR"},
		{"port out of range", map[string]string{"NATS_ADDR": "127.0.0.1:70000"}, config{}, "NATS_ADDR"},
		{"bad log level", map[string]string{"LOG_LEVEL": "loud"}, config{}, "LOG_LEVEL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tc.env)
			got := loadConfig(env)
			if tc.wantErr != "" {
				require.ErrorContains(t, env.Err(), tc.wantErr)
				return
			}
			require.NoError(t, env.Err())
			require.Equal(t, tc.want, got)
		})
	}
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
