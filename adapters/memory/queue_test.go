package memory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/adapters/memory"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/contract/queuetest"
)

func newHarness(t testing.TB) queuetest.Harness {
	q := memory.NewQueue(memory.QueueOptions{MinLease: 50 * time.Millisecond})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	return queuetest.Harness{Queue: q}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, newHarness, queuetest.Capabilities{OrderedPerPartition: true, GivesBackAbandonedLeases: true, MinLease: 50 * time.Millisecond})
}

func BenchmarkQueue(b *testing.B) {
	queuetest.RunBenchmarks(b, func(t testing.TB) queuetest.Harness {
		// A smaller capacity than the default keeps the publish benchmarks'
		// memory bounded: a full queue is drained by the workload.
		q := memory.NewQueue(memory.QueueOptions{Capacity: 200000})
		require.NoError(t, q.Start(t.Context()))
		t.Cleanup(q.Close)
		return queuetest.Harness{Queue: q}
	})
}

const topic = "telemetry"

func msg(gpu string, seq int) ports.OutgoingMessage {
	return ports.OutgoingMessage{Payload: json.RawMessage(fmt.Sprintf(`{"gpu_uuid":%q,"seq":%d}`, gpu, seq)), Key: gpu}
}

func leaseReq(max int, d time.Duration) ports.LeaseRequest {
	return ports.LeaseRequest{Topic: topic, ConsumerID: "c", Max: max, LeaseDuration: d}
}

func ref(l domain.Lease) ports.LeaseRef {
	return ports.LeaseRef{Topic: topic, ConsumerID: "c", LeaseID: l.ID}
}

func TestQueueClosed(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{})
	require.NoError(t, q.Start(t.Context()))
	ctx := t.Context()
	_, err := q.Publish(ctx, topic, []ports.OutgoingMessage{msg("GPU-a", 1)})
	require.NoError(t, err)
	l, err := q.Lease(ctx, leaseReq(1, time.Minute))
	require.NoError(t, err)
	require.Len(t, l.Messages, 1)
	q.Close()
	q.Close() // idempotent

	tests := []struct {
		name string
		call func() error
	}{
		{"publish", func() error { _, err := q.Publish(ctx, topic, []ports.OutgoingMessage{msg("GPU-a", 2)}); return err }},
		{"lease", func() error { _, err := q.Lease(ctx, leaseReq(1, time.Minute)); return err }},
		{"ack", func() error { return q.Ack(ctx, ref(l)) }},
		{"release", func() error { return q.Release(ctx, ref(l)) }},
		{"check", func() error { return q.Check(ctx) }},
		{"stats", func() error { _, err := q.Stats(ctx); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.ErrorIs(t, tc.call(), ports.ErrClosed)
		})
	}
}

func TestQueueCapacity(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{Capacity: 5})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	ctx := t.Context()

	res, err := q.Publish(ctx, topic, []ports.OutgoingMessage{msg("GPU-a", 1), msg("GPU-a", 2), msg("GPU-a", 3)})
	require.NoError(t, err)
	require.Equal(t, 3, res.Accepted)
	_, err = q.Publish(ctx, topic, []ports.OutgoingMessage{msg("GPU-a", 4), msg("GPU-a", 5), msg("GPU-a", 6)})
	require.ErrorIs(t, err, ports.ErrBackpressure)
	st, err := q.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, memory.QueueStats{Topics: 1, Ready: 3}, st, "a refused publish stores nothing")

	// Leased messages still count; acked ones free room.
	l, err := q.Lease(ctx, leaseReq(3, time.Minute))
	require.NoError(t, err)
	_, err = q.Publish(ctx, topic, []ports.OutgoingMessage{msg("GPU-a", 4), msg("GPU-a", 5), msg("GPU-a", 6)})
	require.ErrorIs(t, err, ports.ErrBackpressure)
	require.NoError(t, q.Ack(ctx, ref(l)))
	_, err = q.Publish(ctx, topic, []ports.OutgoingMessage{msg("GPU-a", 4), msg("GPU-a", 5), msg("GPU-a", 6)})
	require.NoError(t, err)
}

// Zero options take the defaults; a negative one is refused, naming it.
func TestQueueOptionsChecked(t *testing.T) {
	t.Parallel()
	_, err := memory.NewQueueChecked(memory.QueueOptions{})
	require.NoError(t, err)
	_, err = memory.NewQueueChecked(memory.QueueOptions{Capacity: -1})
	require.ErrorContains(t, err, "capacity -1")
	_, err = memory.NewQueueChecked(memory.QueueOptions{MinLease: -time.Second})
	require.ErrorContains(t, err, "min lease -1s")
}

func TestQueueBoundedMemories(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		window int
		// after acking messages with keys k0..k(acked-1), republishing k0:
		acked int
		want  ports.PublishResult
	}{
		{"acked key remembered", 2, 2, ports.PublishResult{Duplicates: 1}},
		{"acked key forgotten", 1, 2, ports.PublishResult{Accepted: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := memory.NewQueue(memory.QueueOptions{DedupWindow: tc.window, AckedLeases: tc.window})
			require.NoError(t, q.Start(t.Context()))
			t.Cleanup(q.Close)
			ctx := t.Context()
			var leases []domain.Lease
			for i := range tc.acked {
				m := msg("GPU-a", i)
				m.IdempotencyKey = fmt.Sprintf("k%d", i)
				_, err := q.Publish(ctx, topic, []ports.OutgoingMessage{m})
				require.NoError(t, err)
				l, err := q.Lease(ctx, leaseReq(1, time.Minute))
				require.NoError(t, err)
				require.NoError(t, q.Ack(ctx, ref(l)))
				leases = append(leases, l)
			}
			m := msg("GPU-a", 0)
			m.IdempotencyKey = "k0"
			res, err := q.Publish(ctx, topic, []ports.OutgoingMessage{m})
			require.NoError(t, err)
			require.Equal(t, tc.want, res)

			// The acked-lease memory has the same bound: a repeated ack of the
			// first lease succeeds only while it is remembered.
			err = q.Ack(ctx, ref(leases[0]))
			if tc.want.Duplicates == 1 {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ports.ErrLeaseExpired)
			}
		})
	}
}

func TestQueuePartitions(t *testing.T) {
	t.Parallel()
	const gpuA, gpuB = "GPU-aaaa", "GPU-bbbb"
	require.NotEqual(t, domain.PartitionOf(gpuA), domain.PartitionOf(gpuB), "test needs two partitions")

	t.Run("partition key", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			msg  ports.OutgoingMessage
			want int
		}{
			{"key wins", ports.OutgoingMessage{Payload: json.RawMessage(`{"gpu_uuid":"GPU-bbbb"}`), Key: gpuA}, domain.PartitionOf(gpuA)},
			{"payload gpu_uuid", ports.OutgoingMessage{Payload: json.RawMessage(`{"gpu_uuid":"GPU-bbbb"}`)}, domain.PartitionOf(gpuB)},
			{"idempotent message without either", ports.OutgoingMessage{Payload: json.RawMessage(`[1,2]`), IdempotencyKey: "x"},
				domain.PartitionOf(domain.MessageID(topic, "x").String())},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				q := memory.NewQueue(memory.QueueOptions{})
				require.NoError(t, q.Start(t.Context()))
				t.Cleanup(q.Close)
				_, err := q.Publish(t.Context(), topic, []ports.OutgoingMessage{tc.msg})
				require.NoError(t, err)
				l, err := q.Lease(t.Context(), leaseReq(1, time.Minute))
				require.NoError(t, err)
				require.Len(t, l.Messages, 1)
				require.Equal(t, tc.want, l.Messages[0].Partition)
			})
		}
	})

	t.Run("round robin", func(t *testing.T) {
		t.Parallel()
		q := memory.NewQueue(memory.QueueOptions{})
		require.NoError(t, q.Start(t.Context()))
		t.Cleanup(q.Close)
		var msgs []ports.OutgoingMessage
		for i := range 10 {
			msgs = append(msgs, msg(gpuA, i))
		}
		for i := range 10 {
			msgs = append(msgs, msg(gpuB, 10+i))
		}
		_, err := q.Publish(t.Context(), topic, msgs)
		require.NoError(t, err)
		l, err := q.Lease(t.Context(), leaseReq(4, time.Minute))
		require.NoError(t, err)
		perPartition := map[int]int{}
		for _, m := range l.Messages {
			perPartition[m.Partition]++
		}
		require.Equal(t, map[int]int{domain.PartitionOf(gpuA): 2, domain.PartitionOf(gpuB): 2}, perPartition)
	})

	t.Run("release keeps order", func(t *testing.T) {
		t.Parallel()
		q := memory.NewQueue(memory.QueueOptions{})
		require.NoError(t, q.Start(t.Context()))
		t.Cleanup(q.Close)
		ctx := t.Context()
		for i := range 6 {
			_, err := q.Publish(ctx, topic, []ports.OutgoingMessage{msg(gpuA, i)})
			require.NoError(t, err)
		}
		first, err := q.Lease(ctx, leaseReq(2, time.Minute)) // 0, 1
		require.NoError(t, err)
		second, err := q.Lease(ctx, leaseReq(2, time.Minute)) // 2, 3
		require.NoError(t, err)
		require.NoError(t, q.Release(ctx, ref(second)))
		require.NoError(t, q.Release(ctx, ref(first)))
		all, err := q.Lease(ctx, leaseReq(10, time.Minute))
		require.NoError(t, err)
		var seqs []int
		for _, m := range all.Messages {
			var p struct{ Seq int }
			require.NoError(t, json.Unmarshal(m.Payload, &p))
			seqs = append(seqs, p.Seq)
		}
		require.Equal(t, []int{0, 1, 2, 3, 4, 5}, seqs)
	})
}

// TestQueueExpiryTimer runs on a fake clock: the loop's timer alone (no
// request) must return an expired lease's messages to ready, exactly at the
// deadline.
func TestQueueExpiryTimer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		q := memory.NewQueue(memory.QueueOptions{Registerer: reg})
		require.NoError(t, q.Start(t.Context()))
		defer q.Close()
		ctx := context.Background()
		_, err := q.Publish(ctx, topic, []ports.OutgoingMessage{msg("GPU-a", 1), msg("GPU-b", 2)})
		require.NoError(t, err)
		early, err := q.Lease(ctx, leaseReq(1, time.Second))
		require.NoError(t, err)
		late, err := q.Lease(ctx, leaseReq(1, 2*time.Second))
		require.NoError(t, err)
		require.Len(t, late.Messages, 1)

		time.Sleep(time.Second - time.Nanosecond)
		synctest.Wait()
		require.Equal(t, 0.0, gauge(t, reg, "memory_queue_ready_messages"), "before the deadline")

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		require.Equal(t, 1.0, gauge(t, reg, "memory_queue_ready_messages"), "at the deadline")
		require.Equal(t, 1.0, gauge(t, reg, "memory_queue_leases_expired_total"))
		require.ErrorIs(t, q.Ack(ctx, ref(early)), ports.ErrLeaseExpired)
		require.NoError(t, q.Ack(ctx, ref(late)), "the later lease is still live")

		again, err := q.Lease(ctx, leaseReq(10, time.Second))
		require.NoError(t, err)
		require.Len(t, again.Messages, 1)
		require.Equal(t, early.Messages[0].ID, again.Messages[0].ID)
		require.Equal(t, 2, again.Messages[0].Deliveries)
	})
}

func TestQueueMetricsLint(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	q := memory.NewQueue(memory.QueueOptions{Registerer: reg})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	_, err := q.Publish(t.Context(), topic, []ports.OutgoingMessage{msg("GPU-a", 1)})
	require.NoError(t, err)
	promxtest.RequireLintClean(t, reg)
	require.Equal(t, 1.0, gauge(t, reg, "memory_queue_messages_published_total"))
}

func TestQueueModule(t *testing.T) {
	t.Parallel()
	require.NoError(t, fx.ValidateApp(memory.QueueModule, fx.Invoke(func(ports.Queue) {})))

	var pub ports.Publisher
	var con ports.Consumer
	app := fxtest.New(t, memory.QueueModule, fx.Populate(&pub, &con))
	app.RequireStart()
	_, err := pub.Publish(t.Context(), topic, []ports.OutgoingMessage{msg("GPU-a", 1)})
	require.NoError(t, err)
	l, err := con.Lease(t.Context(), leaseReq(1, time.Minute))
	require.NoError(t, err)
	require.Len(t, l.Messages, 1, "publisher and consumer are one queue")
	app.RequireStop()
	_, err = con.Lease(t.Context(), leaseReq(1, time.Minute))
	require.ErrorIs(t, err, ports.ErrClosed, "stopping the app closes the queue")
}

func TestQueueLeaseIDs(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{})
	require.NoError(t, q.Start(t.Context()))
	t.Cleanup(q.Close)
	l, err := q.Lease(t.Context(), leaseReq(1, time.Minute))
	require.NoError(t, err)
	require.Equal(t, uuid.Nil, l.ID, "an empty lease has no id")
	require.NotNil(t, l.Messages)
}

// gauge reads one unlabelled metric's value from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		require.Len(t, f.GetMetric(), 1)
		m := f.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	require.Failf(t, "metric not found", "%s", name)
	return 0
}

// A queue starts nothing until Start: calls fail fast with ErrClosed rather
// than wait for an owner that does not run; Close works either way.
func TestQueueLifecycle(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueOptions{})
	_, err := q.Publish(t.Context(), "t", []ports.OutgoingMessage{{Payload: json.RawMessage(`1`)}})
	require.ErrorIs(t, err, ports.ErrClosed, "before Start")
	require.ErrorContains(t, err, "not started")
	q.Close()
	require.ErrorIs(t, q.Start(t.Context()), ports.ErrClosed, "Start after Close")

	started := memory.NewQueue(memory.QueueOptions{})
	require.NoError(t, started.Start(t.Context()))
	require.ErrorIs(t, started.Start(t.Context()), ports.ErrClosed, "Start twice")
	require.NoError(t, started.Check(t.Context()))
	started.Close()
	require.ErrorIs(t, started.Check(t.Context()), ports.ErrClosed, "after Close")
}
