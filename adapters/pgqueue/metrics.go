package pgqueue

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqwriter_messages_published_total",
			Help: "Messages committed to the queue table (duplicates excluded).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqwriter_messages_duplicate_total",
			Help: "Published messages whose id was already queued (idempotent retries).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqwriter_publish_rejected_total",
			Help: "Publish requests refused, by reason.",
		}, []string{"reason"}),
		flushTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mqwriter_flush_duration_seconds",
			Help:    "Duration of one group-commit flush transaction.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		flushSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mqwriter_flush_batch_messages",
			Help:    "Messages written by one group-commit flush.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
	}
	for _, r := range []string{reasonInvalid, reasonBackpressure, reasonClosed, reasonUnavailable} {
		m.rejected.WithLabelValues(r)
	}
	util := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mqwriter_buffer_utilization_ratio",
		Help: "Publishes accepted but not yet committed: the larger of messages over WRITER_BUFFER_SIZE and bytes over WRITER_BUFFER_BYTES (the autoscaling signal).",
	}, utilization)
	return m, register(reg, util, m.published, m.duplicates, m.rejected, m.flushTime, m.flushSize)
}

type readerMetrics struct {
	leased       prometheus.Counter
	acked        prometheus.Counter
	expired      prometheus.Counter
	redelivered  prometheus.Counter
	leaseTime    prometheus.Histogram
	refillTime   prometheus.Histogram
	refillFails  prometheus.Counter
	deleteTime   prometheus.Histogram
	statsFails   prometheus.Counter
	deadLettered prometheus.Counter
}

func newReaderMetrics(reg prometheus.Registerer, utilization, buffered func() float64, topics prometheus.Collector) (*readerMetrics, error) {
	m := &readerMetrics{
		leased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqreader_messages_leased_total",
			Help: "Messages handed out under a lease (redeliveries included).",
		}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqreader_messages_acked_total",
			Help: "Messages acked and deleted from the queue table.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqreader_leases_expired_total",
			Help: "Leases that expired unacked; their messages are reloaded and redelivered.",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqreader_messages_redelivered_total",
			Help: "Messages handed out again after an earlier delivery ended without an ack (released or expired; counted at the lease).",
		}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqreader_messages_dead_lettered_total",
			Help: "Messages moved to dead_letters at the delivery limit (MQ_MAX_DELIVERIES).",
		}),
		leaseTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mqreader_lease_duration_seconds",
			Help:    "Latency of a Lease call, a long poll's wait for messages (LeaseRequest.Wait) included.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
		}),
		refillTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mqreader_refill_duration_seconds",
			Help:    "Duration of one refill query.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		refillFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqreader_refill_errors_total",
			Help: "Refill queries that failed.",
		}),
		deleteTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mqreader_delete_duration_seconds",
			Help:    "Duration of one batched DELETE of acked messages.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		statsFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mqreader_backlog_measure_errors_total",
			Help: "Backlog and oldest-message measurements in PostgreSQL that failed (the gauges keep their last values).",
		}),
	}
	util := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mqreader_buffer_utilization_ratio",
		Help: "The fullest topic's in-memory buffer use: the larger of messages over READER_BUFFER_SIZE and bytes over READER_BUFFER_BYTES (the autoscaling signal).",
	}, utilization)
	buf := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mqreader_buffered_messages",
		Help: "Messages held in memory, ready or leased, over all topics (the backlog in PostgreSQL is mqreader_backlog_messages).",
	}, buffered)
	return m, register(reg, util, buf, topics, m.leased, m.acked, m.expired, m.redelivered, m.deadLettered, m.leaseTime, m.refillTime,
		m.refillFails, m.deleteTime, m.statsFails)
}

// register registers every collector; a nil registerer keeps them
// unregistered (tests, several instances in one process).
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	var errs []error
	for _, c := range cs {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}
