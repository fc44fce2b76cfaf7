// Command mqreader is the queue's read side: it owns a contiguous range of
// the 256 partitions, loads their messages from PostgreSQL into memory, hands
// them out under leases (POST /v1/lease), deletes them on ack (POST /v1/ack)
// and returns them on release (POST /v1/release). Its range comes from
// PARTITIONS ("0-255") or from PARTITIONS_FILE, the partition controller's
// ConfigMap, looked up by POD_NAME (default: the hostname). On SIGTERM it
// stops leasing, keeps taking acks until its leases are done or expired,
// flushes deletes and exits. Lease, ack and release need Authorization:
// Bearer with one of the consume tokens of MQ_CONSUME_TOKENS or
// MQ_CONSUME_TOKENS_FILE; without any mqreader refuses to start, unless
// MQ_AUTH=none.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx"
	"github.com/gpufleet/telemetry/internal/startstop"
)

func main() { platform.Main(options) }

func options(env *platform.Env) fx.Option {
	common := platform.LoadCommon(env, "mqreader", ":8082")
	d := pgqueue.DefaultReaderConfig()
	served := partitionRange(env)
	cfg := pgqueue.ReaderConfig{
		Range:        served,
		BufferSize:   env.Int("READER_BUFFER_SIZE", d.BufferSize, 1, 10_000_000),
		RefillBatch:  env.Int("READER_REFILL_BATCH", d.RefillBatch, 1, 100_000),
		DrainTimeout: env.Millis("READER_DRAIN_TIMEOUT_MS", d.DrainTimeout, 0, 600_000),
		BufferBytes:  int64(env.Int("READER_BUFFER_BYTES", int(d.BufferBytes), 1<<20, 1<<36)),
		RefillBytes:  env.Int("READER_REFILL_BYTES", d.RefillBytes, 1<<20, 1<<32),
		Lease: domain.LeaseLimits{
			MaxMessages: env.Int("MQ_LEASE_MAX_MESSAGES", domain.MaxLeaseMessages, 1, domain.CeilingLeaseMessages),
			MaxDuration: env.Seconds("MQ_LEASE_MAX_SECONDS", domain.MaxLeaseDuration, 1, int(domain.CeilingLeaseDuration/time.Second)),
		},
		LeaseMaxBytes:   env.Int("MQ_LEASE_MAX_BYTES", pgqueue.DefaultLeaseMaxBytes, 1<<10, 1<<30),
		StatsInterval:   env.Millis("READER_STATS_INTERVAL_MS", d.StatsInterval, 100, 3_600_000),
		BacklogCountCap: env.Int("READER_BACKLOG_COUNT_CAP", d.BacklogCountCap, 1, 1_000_000_000),
		MaxDeliveries:   backend.MaxDeliveries(env),
	}
	return fx.Options(
		platform.Module(common),
		backend.Database(env, backend.ReaderProfile),
		watchAssignment(env, served),
		fx.Supply(cfg),
		pgqueue.Module,
		backend.QueueServer(env, backend.ReadSide),
		fx.Provide(
			platform.AsCheck(func(r *pgqueue.Reader) platform.Check { return platform.CheckOf("reader", r) }),
			// The reader drains (no new leases; waits for the outstanding
			// ones) while the server still takes their acks.
			platform.AsDrainer(func(r *pgqueue.Reader) platform.Drainer { return platform.Drainer{Name: "reader", Fn: r.Drain} }),
		),
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
	r, err := assignedRange(path, podName(env))
	if err != nil {
		env.Fail(err)
	}
	return r
}

func podName(env *platform.Env) string {
	host, _ := os.Hostname()
	return env.String("POD_NAME", host)
}

// assignedRange reads pod's range from the assignment file; nil when the
// file does not exist yet or does not name the pod.
func assignedRange(path, pod string) (*domain.PartitionRange, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil // the controller has not written the ConfigMap yet
	}
	if err != nil {
		return nil, fmt.Errorf("PARTITIONS_FILE=%s: %w", path, err)
	}
	var a domain.Assignment
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("PARTITIONS_FILE=%s: %w", path, err)
	}
	r, ok := a.For(pod)
	if !ok {
		return nil, nil
	}
	return &r, nil
}

// watchAssignment re-reads PARTITIONS_FILE (a mounted ConfigMap, which the
// kubelet updates in place) and reports, in the log and in
// mqreader_partition_assignment_stale, when it no longer matches the range
// this reader serves. The range itself changes only at restart: the
// partition controller's rolling restart applies it, so two readers never
// change ranges at the same moment.
func watchAssignment(env *platform.Env, served *domain.PartitionRange) fx.Option {
	path := env.String("PARTITIONS_FILE", "")
	if path == "" || env.String("PARTITIONS", "") != "" {
		return fx.Options()
	}
	pod := podName(env)
	every := env.Millis("PARTITIONS_WATCH_INTERVAL_MS", 10*time.Second, 10, 3_600_000)
	return fx.Invoke(func(lc fx.Lifecycle, logger *slog.Logger, reg prometheus.Registerer) {
		w := &assignmentWatch{path: path, pod: pod, every: every, served: served, logger: logger,
			stale: promx.Gauge("mqreader_partition_assignment_stale",
				"1 when the mounted partition assignment differs from the range this reader serves (a restart applies it).")}
		reg.MustRegister(w.stale)
		start, stop := startstop.Hooks("assignment watch", w.run)
		lc.Append(fx.Hook{OnStart: start, OnStop: stop})
	})
}

// assignmentWatch compares the mounted assignment with the served range
// every interval until the app stops.
type assignmentWatch struct {
	path, pod string
	every     time.Duration
	served    *domain.PartitionRange
	logger    *slog.Logger
	stale     prometheus.Gauge
}

func (w *assignmentWatch) run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	was := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, err := assignedRange(w.path, w.pod)
		if err != nil {
			w.logger.Warn("partition assignment unreadable", "err", err)
			continue
		}
		differs := !sameRange(now, w.served)
		if differs && !was {
			w.logger.Warn("partition assignment changed; a restart applies it", "pod", w.pod,
				"serving", rangeString(w.served), "assigned", rangeString(now))
		}
		was = differs
		if differs {
			w.stale.Set(1)
		} else {
			w.stale.Set(0)
		}
	}
}

func sameRange(a, b *domain.PartitionRange) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func rangeString(r *domain.PartitionRange) string {
	if r == nil {
		return "none"
	}
	return r.String()
}
