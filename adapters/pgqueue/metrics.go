package pgqueue

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/internal/promx"
)

// Rejection reasons of mqwriter_publish_rejected_total.
const (
	reasonInvalid      = "invalid_argument"
	reasonBackpressure = "backpressure"
	reasonClosed       = "closed"
	reasonUnavailable  = "unavailable"
)

type writerMetrics struct {
	published  prometheus.Counter
	duplicates prometheus.Counter
	rejected   *prometheus.CounterVec
	flushTime  prometheus.Histogram
	flushSize  prometheus.Histogram
}

func newWriterMetrics(reg prometheus.Registerer, utilization func() float64) (*writerMetrics, error) {
	m := &writerMetrics{
		published:  promx.Counter("mqwriter_messages_published_total", "Messages committed to the queue table (duplicates excluded)."),
		duplicates: promx.Counter("mqwriter_messages_duplicate_total", "Published messages whose id was already queued (idempotent retries)."),
		rejected:   promx.CounterVec("mqwriter_publish_rejected_total", "Publish requests refused, by reason.", "reason"),
		flushTime:  promx.Histogram("mqwriter_flush_duration_seconds", "Duration of one group-commit flush transaction.", prometheus.ExponentialBuckets(0.0005, 2, 14)),
		flushSize: promx.Histogram("mqwriter_flush_batch_messages", "Messages written by one group-commit flush.",
			prometheus.ExponentialBuckets(1, 2, 14)),
	}
	promx.Zero(m.rejected, reasonInvalid, reasonBackpressure, reasonClosed, reasonUnavailable)
	util := promx.GaugeFunc("mqwriter_buffer_utilization_ratio",
		"Publishes accepted but not yet committed: the larger of messages over WRITER_BUFFER_SIZE and bytes over WRITER_BUFFER_BYTES (the autoscaling signal).",
		utilization)
	return m, promx.Register(reg, util, m.published, m.duplicates, m.rejected, m.flushTime, m.flushSize)
}

type readerMetrics struct {
	leased       prometheus.Counter
	acked        prometheus.Counter
	expired      prometheus.Counter
	redelivered  prometheus.Counter
	leaseTime    prometheus.Histogram
	refillTime   prometheus.Histogram
	refillFails  prometheus.Counter
	listenFails  prometheus.Counter
	deleteTime   prometheus.Histogram
	statsFails   prometheus.Counter
	deadLettered prometheus.Counter
}

func newReaderMetrics(reg prometheus.Registerer, utilization, buffered, listening func() float64, topics prometheus.Collector) (*readerMetrics, error) {
	queryBuckets := prometheus.ExponentialBuckets(0.0005, 2, 14)
	m := &readerMetrics{
		leased: promx.Counter("mqreader_messages_leased_total", "Messages handed out under a lease (redeliveries included)."),
		acked:  promx.Counter("mqreader_messages_acked_total", "Messages acked and deleted from the queue table."),
		expired: promx.Counter("mqreader_leases_expired_total",
			"Leases that expired unacked; their messages are reloaded and redelivered."),
		redelivered: promx.Counter("mqreader_messages_redelivered_total",
			"Messages handed out again after an earlier delivery ended without an ack (released or expired; counted at the lease)."),
		deadLettered: promx.Counter("mqreader_messages_dead_lettered_total",
			"Messages moved to dead_letters at the delivery limit (MQ_MAX_DELIVERIES)."),
		leaseTime:   promx.Histogram("mqreader_lease_duration_seconds", "Latency of a Lease call, a long poll's wait for messages (LeaseRequest.Wait) included.", prometheus.ExponentialBuckets(0.00001, 4, 10)),
		refillTime:  promx.Histogram("mqreader_refill_duration_seconds", "Duration of one refill query.", queryBuckets),
		refillFails: promx.Counter("mqreader_refill_errors_total", "Refill queries that failed."),
		listenFails: promx.Counter("mqreader_listen_errors_total",
			"Subscriptions to the writer's notifications of new rows that failed or were lost; the reader polls until it listens again."),
		deleteTime: promx.Histogram("mqreader_delete_duration_seconds", "Duration of one batched DELETE of acked messages.", queryBuckets),
		statsFails: promx.Counter("mqreader_backlog_measure_errors_total",
			"Backlog and oldest-message measurements in PostgreSQL that failed (the gauges keep their last values)."),
	}
	util := promx.GaugeFunc("mqreader_buffer_utilization_ratio",
		"The fullest topic's in-memory buffer use: the larger of messages over READER_BUFFER_SIZE and bytes over READER_BUFFER_BYTES (the autoscaling signal).",
		utilization)
	buf := promx.GaugeFunc("mqreader_buffered_messages",
		"Messages held in memory, ready or leased, over all topics (the backlog in PostgreSQL is mqreader_backlog_messages).",
		buffered)
	listen := promx.GaugeFunc("mqreader_listening",
		"1 while the reader is subscribed to the writer's notifications of new rows, 0 while it only polls (starting, the database down, a pooler that drops notifications).",
		listening)
	return m, promx.Register(reg, util, buf, listen, topics, m.leased, m.acked, m.expired, m.redelivered, m.deadLettered, m.leaseTime, m.refillTime,
		m.refillFails, m.listenFails, m.deleteTime, m.statsFails)
}
