// Command mqreader is the queue's read side: it owns a contiguous range of
// the 256 partitions, loads their messages from PostgreSQL into memory, hands
// them out under leases (POST /v1/lease), deletes them on ack (POST /v1/ack)
// and returns them on release (POST /v1/release). Its range comes from
// PARTITIONS ("0-255") or from PARTITIONS_FILE, the partition controller's
// ConfigMap, looked up by POD_NAME (default: the hostname). On SIGTERM it
// stops leasing, keeps taking acks until its leases are done or expired,
// flushes deletes and exits.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

func main() { platform.Main(options) }

func options(env *platform.Env) fx.Option {
	common := platform.LoadCommon(env, "mqreader", ":8082")
	d := pgqueue.DefaultReaderConfig()
	cfg := pgqueue.ReaderConfig{
		Range:        partitionRange(env),
		BufferSize:   env.Int("READER_BUFFER_SIZE", d.BufferSize, 1, 10_000_000),
		RefillBatch:  env.Int("READER_REFILL_BATCH", d.RefillBatch, 1, 100_000),
		DrainTimeout: env.Millis("READER_DRAIN_TIMEOUT_MS", d.DrainTimeout, 0, 600_000),
	}
	maxBody := int64(env.Int("MAX_BODY_BYTES", mqhttp.DefaultMaxBodyBytes, 1024, 1<<30))
	// Only these topics are served; a request for another is a 404.
	topics := env.List("QUEUE_TOPICS", []string{domain.TelemetryTopic})
	return fx.Options(
		platform.Module(common),
		backend.Database(env),
		fx.Supply(cfg),
		pgqueue.Module,
		fx.Provide(
			platform.AsRoutes(func(cons ports.Consumer, logger *slog.Logger, reg prometheus.Registerer) *mqhttp.Server {
				return mqhttp.NewServer(nil, cons, mqhttp.ServerOptions{Logger: logger, Registerer: reg, MaxBodyBytes: maxBody, Topics: topics})
			}),
			platform.AsCheck(func(r *pgqueue.Reader) platform.Check { return platform.Check{Name: "reader", Fn: r.Check} }),
		),
		// Registered after the HTTP server's hook, so it runs first on stop:
		// the reader drains while the server still takes acks.
		fx.Invoke(func(lc fx.Lifecycle, r *pgqueue.Reader, logger *slog.Logger) {
			lc.Append(fx.StopHook(func(ctx context.Context) error {
				logger.Info("draining: no new leases; waiting for outstanding leases")
				return r.Drain(ctx)
			}))
		}),
	)
}

// partitionRange reads PARTITIONS, or this pod's entry in PARTITIONS_FILE.
// Neither set means no range: the reader runs, serves nothing, and says so in
// /readyz.
func partitionRange(env *platform.Env) *domain.PartitionRange {
	if s := env.String("PARTITIONS", ""); s != "" {
		r, err := domain.ParseRange(s)
		if err != nil {
			env.Fail(fmt.Errorf("PARTITIONS=%q: %w", s, err))
			return nil
		}
		return &r
	}
	path := env.String("PARTITIONS_FILE", "")
	if path == "" {
		return nil
	}
	host, _ := os.Hostname()
	pod := env.String("POD_NAME", host)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil // the controller has not written the ConfigMap yet
	}
	if err != nil {
		env.Fail(fmt.Errorf("PARTITIONS_FILE=%s: %w", path, err))
		return nil
	}
	var a domain.Assignment
	if err := json.Unmarshal(b, &a); err != nil {
		env.Fail(fmt.Errorf("PARTITIONS_FILE=%s: %w", path, err))
		return nil
	}
	r, ok := a.For(pod)
	if !ok {
		return nil
	}
	return &r
}
