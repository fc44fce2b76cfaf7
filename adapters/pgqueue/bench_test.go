package pgqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// BenchmarkInsertMethod compares the two ways a flush can write a batch:
// one unnest INSERT (the one Writer uses) and COPY into a staging table plus
// INSERT … SELECT. Payloads are telemetry-sized (~330 bytes).
func BenchmarkInsertMethod(b *testing.B) {
	methods := []struct {
		name   string
		insert insertFunc
	}{
		{"unnest", insertUnnest},
		{"copy", insertCopy},
	}
	pool := newPool(b)
	payload := json.RawMessage(`{"timestamp":"2025-07-18T13:42:33Z","metric_name":"DCGM_FI_DEV_GPU_UTIL","gpu_index":3,` +
		`"device":"nvidia3","gpu_uuid":"GPU-5fd4f087-86f3-7a43-b711-4771313afc50","model_name":"NVIDIA H100 80GB HBM3",` +
		`"hostname":"mtv5-dgx1-hgpu-031","container":"","pod":"","namespace":"","value":87,"labels_raw":"DCGM_FI_DRIVER_VERSION=535.129.03"}`)
	for _, size := range []int{1, 10, 100, 1000} {
		for _, m := range methods {
			b.Run(fmt.Sprintf("%s/batch%d", m.name, size), func(b *testing.B) {
				rows := make([]row, size)
				b.ReportAllocs()
				for b.Loop() {
					for i := range rows {
						rows[i] = row{topic: "bench", id: uuid.New(), payload: payload, partition: int16(i % domain.NumPartitions)}
					}
					got, err := m.insert(context.Background(), pool, rows)
					require.NoError(b, err)
					require.Len(b, got, size)
				}
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkDeliveryCount measures what a durable delivery count would cost
// on the hot path if it were written when a message is leased (the
// alternative ADR 0006 rejects): each lease's ids get an UPDATE
// deliveries = deliveries + 1 before the ack's DELETE, against the DELETE
// alone, which is all the lease/ack path runs with the count written only
// when a delivery ends without an ack. Rows are telemetry-sized; inserting
// them is not timed.
func BenchmarkDeliveryCount(b *testing.B) {
	pool := newPool(b)
	ctx := context.Background()
	payload := `{"timestamp":"2025-07-18T13:42:33Z","metric_name":"DCGM_FI_DEV_GPU_UTIL","gpu_index":3,` +
		`"device":"nvidia3","gpu_uuid":"GPU-5fd4f087-86f3-7a43-b711-4771313afc50","model_name":"NVIDIA H100 80GB HBM3",` +
		`"hostname":"mtv5-dgx1-hgpu-031","container":"","pod":"","namespace":"","value":87,"labels_raw":"DCGM_FI_DRIVER_VERSION=535.129.03"}`
	const incrementSQL = `UPDATE queue_messages SET deliveries = deliveries + 1 WHERE id = ANY($1::bigint[])`
	for _, size := range []int{200, 2000} {
		for _, withUpdate := range []bool{false, true} {
			name := fmt.Sprintf("ack-only/lease%d", size)
			if withUpdate {
				name = fmt.Sprintf("update-on-lease+ack/lease%d", size)
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					rows, err := pool.Query(ctx, `INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key)
SELECT 'bench-deliveries', gen_random_uuid(), $1::jsonb, (i % 256)::smallint FROM generate_series(1, $2) i RETURNING id`, payload, size)
					require.NoError(b, err)
					ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
					require.NoError(b, err)
					b.StartTimer()
					if withUpdate {
						_, err = pool.Exec(ctx, incrementSQL, ids)
						require.NoError(b, err)
					}
					_, err = pool.Exec(ctx, deleteSQL, ids)
					require.NoError(b, err)
				}
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkEmptyRefill measures a refill that finds no new row, as a topic
// runs after a notification whose rows another refill already took. Its
// cost grows with the rows the reader holds (leased, awaiting delete) that
// the query walks and excludes: all of them in a full refill (from 0,
// every held id: FullRefillInterval, or polling while the listener is
// down), none in a refill from the announced id (ADR 0016), which passes
// only the held ids from it on. held 0 is an idle queue.
func BenchmarkEmptyRefill(b *testing.B) {
	pool := newPool(b)
	ctx := context.Background()
	rows := pgRows{pool: pool}
	rng := domain.PartitionRange{First: 0, Last: domain.NumPartitions - 1}
	for _, held := range []int{0, 100, 2000, 10000} {
		topic := fmt.Sprintf("bench-empty-refill-%d", held)
		q, err := pool.Query(ctx, `INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key)
SELECT $1, gen_random_uuid(), '{"v":1}'::jsonb, (i % 256)::smallint FROM generate_series(1, $2) i RETURNING id`, topic, held)
		require.NoError(b, err)
		ids, err := pgx.CollectRows(q, pgx.RowTo[int64])
		require.NoError(b, err)
		next := int64(1)
		if len(ids) > 0 {
			next = slices.Max(ids) + 1
		}
		for _, kind := range []struct {
			name string
			from int64
			held []int64
		}{{"full", 0, ids}, {"announced", next, nil}} {
			b.Run(fmt.Sprintf("%s/held%d", kind.name, held), func(b *testing.B) {
				for b.Loop() {
					got, err := rows.load(ctx, topic, rng, kind.from, kind.held, 2000, 8<<20)
					require.NoError(b, err)
					require.Empty(b, got)
				}
			})
		}
	}
}

// BenchmarkIdleLatency measures what a lightly loaded queue adds between a
// publish's commit and a consumer holding the message (ADR 0014): one
// message at a time, published once the previous one was received, to a
// consumer that either long-polls (a lease Wait, woken by NOTIFY) or, as the
// collector did before, leases without waiting and sleeps 100 ms after an
// empty lease, over a reader polling every 50 ms. It reports the median and
// 99th percentile of commit → lease returned.
func BenchmarkIdleLatency(b *testing.B) {
	for _, mode := range []struct {
		name  string
		wait  time.Duration
		sleep time.Duration
	}{
		{"long-poll", time.Second, 0},
		{"poll-100ms", 0, 100 * time.Millisecond},
	} {
		b.Run(mode.name, func(b *testing.B) {
			pool := newPool(b)
			w := newWriter(b, pool, WriterConfig{})
			r := newReader(b, pool, ReaderConfig{Range: fullRange(), RefillInterval: DefaultReaderConfig().RefillInterval})
			ctx := b.Context()
			req := ports.LeaseRequest{Topic: "idle", ConsumerID: "c", Max: 100, LeaseDuration: time.Minute, Wait: mode.wait}
			got := make(chan time.Time)
			stop := make(chan struct{})
			var consumer sync.WaitGroup
			consumer.Go(func() {
				for {
					l, err := r.Lease(ctx, req)
					if err != nil {
						return
					}
					if len(l.Messages) == 0 {
						select {
						case <-time.After(mode.sleep):
							continue
						case <-stop:
							return
						}
					}
					at := time.Now()
					if err := r.Ack(ctx, ports.LeaseRef{Topic: req.Topic, ConsumerID: "c", LeaseID: l.ID}); err != nil {
						return
					}
					select {
					case got <- at:
					case <-stop:
						return
					}
				}
			})
			defer func() { close(stop); consumer.Wait() }()
			var lat []time.Duration
			i := 0
			for b.Loop() {
				i++
				_, err := w.Publish(ctx, req.Topic, msgs(1, fmt.Sprintf("m%d", i)))
				committed := time.Now()
				require.NoError(b, err)
				lat = append(lat, (<-got).Sub(committed))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
