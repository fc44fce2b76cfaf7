package queuetest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpufleet/telemetry/ports"
)

// benchGPUs spreads benchmark messages over as many GPUs (partitions) as the
// shipped DCGM dump has.
const benchGPUs = 247

// publishers is the goroutines per GOMAXPROCS of Publish/1msg: many small
// concurrent publishes, as from many streamers, which a group-committing
// writer batches.
const publishers = 8

// RunBenchmarks measures newHarness's queue on one workload shared by every
// adapter, each sub-benchmark on a fresh harness and topic, and reports
// msgs/s:
//
//   - Publish/1msg: one message per Publish, from 8×GOMAXPROCS goroutines (b.RunParallel).
//   - Publish/100msgs: 100 messages per Publish, one goroutine.
//   - LeaseAck/max100: Lease with Max 100, then Ack, in a loop over
//     messages published beforehand (publishing is not timed).
//
// A publish refused with ports.ErrBackpressure (a bounded queue is full) is
// retried after the publisher leases and acks up to 10,000 messages; the
// number of such drains is reported as drains. Drains are timed in
// Publish/1msg only (b.RunParallel cannot stop the timer).
func RunBenchmarks(b *testing.B, newHarness NewHarness) {
	b.Run("Publish", func(b *testing.B) {
		b.Run("1msg", func(b *testing.B) { benchPublishOne(b, newHarness) })
		b.Run("100msgs", func(b *testing.B) { benchPublishBatch(b, newHarness) })
	})
	b.Run("LeaseAck", func(b *testing.B) {
		b.Run("max100", func(b *testing.B) { benchLeaseAck(b, newHarness) })
	})
}

// bench is one benchmark's queue and topic.
type bench struct {
	q      ports.Queue
	topic  string
	drains atomic.Int64
	// accepted and duplicates sum the publish results, which must account
	// for every message published: a queue that answers without storing
	// must not look fast.
	accepted, duplicates atomic.Int64
}

func newBench(b *testing.B, newHarness NewHarness) *bench {
	b.Helper()
	h := newHarness(b)
	if h.Queue == nil {
		b.Fatal("harness without a queue")
	}
	return &bench{q: h.Queue, topic: newTopic()}
}

// publish publishes msgs, draining the queue whenever it reports
// backpressure. With untimed set (one goroutine only), drains are not timed.
func (bn *bench) publish(ctx context.Context, msgs []ports.OutgoingMessage, untimed *testing.B) error {
	for {
		res, err := bn.q.Publish(ctx, bn.topic, msgs)
		if err == nil {
			bn.accepted.Add(int64(res.Accepted))
			bn.duplicates.Add(int64(res.Duplicates))
		}
		if !errors.Is(err, ports.ErrBackpressure) {
			return err
		}
		bn.drains.Add(1)
		if untimed != nil {
			untimed.StopTimer()
		}
		err = bn.drain(ctx)
		if untimed != nil {
			untimed.StartTimer()
		}
		if err != nil {
			return err
		}
	}
}

// drain leases and acks up to 10,000 messages, or pauses when none is ready.
func (bn *bench) drain(ctx context.Context) error {
	l, err := bn.q.Lease(ctx, ports.LeaseRequest{Topic: bn.topic, ConsumerID: "bench-drain", Max: 10000, LeaseDuration: longLease})
	if err != nil {
		return err
	}
	if len(l.Messages) == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
			return nil
		}
	}
	return bn.q.Ack(ctx, ports.LeaseRef{Topic: bn.topic, ConsumerID: "bench-drain", LeaseID: l.ID})
}

// requirePublished fails the benchmark unless its publishes were answered
// with exactly want accepted messages and no duplicates (the workload has no
// idempotency keys, so nothing can be a duplicate).
func (bn *bench) requirePublished(b *testing.B, want int64) {
	b.Helper()
	if got, dup := bn.accepted.Load(), bn.duplicates.Load(); got != want || dup != 0 {
		b.Fatalf("publishes answered %d accepted and %d duplicates for %d distinct messages", got, dup, want)
	}
}

func (bn *bench) report(b *testing.B, msgs int64) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(msgs)/s, "msgs/s")
	}
	b.ReportMetric(float64(bn.drains.Load()), "drains")
}

func benchPublishOne(b *testing.B, newHarness NewHarness) {
	bn := newBench(b, newHarness)
	ctx := b.Context()
	msgs := batch(0, 1024, benchGPUs)
	var next atomic.Int64
	b.SetParallelism(publishers)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			if err := bn.publish(ctx, msgs[i%int64(len(msgs)):][:1], nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	bn.requirePublished(b, int64(b.N))
	bn.report(b, int64(b.N))
}

func benchPublishBatch(b *testing.B, newHarness NewHarness) {
	bn := newBench(b, newHarness)
	ctx := b.Context()
	msgs := batch(0, 100, benchGPUs)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := bn.publish(ctx, msgs, b); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	bn.requirePublished(b, int64(b.N)*int64(len(msgs)))
	bn.report(b, int64(b.N)*int64(len(msgs)))
}

func benchLeaseAck(b *testing.B, newHarness NewHarness) {
	const (
		max   = 100
		chunk = 10000 // messages published, untimed, whenever fewer than max remain
	)
	bn := newBench(b, newHarness)
	ctx := b.Context()
	msgs := batch(0, 1000, benchGPUs)
	req := ports.LeaseRequest{Topic: bn.topic, ConsumerID: "bench", Max: max, LeaseDuration: longLease}
	var remaining, published, acked int64
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if remaining < max {
			b.StopTimer()
			for range chunk / len(msgs) {
				if err := bn.publish(ctx, msgs, nil); err != nil {
					b.Fatal(err)
				}
			}
			remaining += chunk
			published += chunk
			// Before leasing: a queue that stored nothing would otherwise
			// be polled forever.
			bn.requirePublished(b, published)
			b.StartTimer()
		}
		l, err := bn.q.Lease(ctx, req)
		for err == nil && len(l.Messages) == 0 {
			// An adapter may still be loading what was just published.
			select {
			case <-ctx.Done():
				b.Fatal(ctx.Err())
			case <-time.After(time.Millisecond):
			}
			l, err = bn.q.Lease(ctx, req)
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := bn.q.Ack(ctx, ports.LeaseRef{Topic: bn.topic, ConsumerID: "bench", LeaseID: l.ID}); err != nil {
			b.Fatal(err)
		}
		remaining -= int64(len(l.Messages))
		acked += int64(len(l.Messages))
	}
	b.StopTimer()
	if acked > published {
		b.Fatalf("acked %d messages of %d published", acked, published)
	}
	bn.report(b, acked)
}
