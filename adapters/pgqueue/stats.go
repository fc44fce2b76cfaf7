package pgqueue

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// statsTick is how often statsLoop looks for topics due a measurement: a
// topic is measured within statsTick of its first lease, then every
// StatsInterval.
const statsTick = time.Second

// statsLoop measures, for every topic this reader serves, its backlog in
// PostgreSQL (the rows of the reader's range, not only those in memory) and
// its oldest message, one topic at a time, off every topic owner. It runs
// until the reader drains; a failed measurement keeps the last values and is
// counted.
func (r *Reader) statsLoop(ctx context.Context) {
	tick := time.NewTicker(min(statsTick, r.cfg.StatsInterval))
	defer tick.Stop()
	measured := map[*topic]time.Time{} // owned by statsLoop
	for {
		for name, t := range *r.topics.Load() {
			if at, ok := measured[t]; ok && time.Since(at) < r.cfg.StatsInterval {
				continue
			}
			measured[t] = time.Now()
			qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
			st, err := r.rows.stats(qctx, name, *r.cfg.Range, r.cfg.BacklogCountCap)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.metrics.statsFails.Inc()
				r.logger.Warn("measure backlog failed", "topic", name, "err", err)
				continue
			}
			t.dbBacklog.Store(st.backlog)
			if st.oldest.IsZero() {
				t.oldestNanos.Store(0)
			} else {
				t.oldestNanos.Store(st.oldest.UnixNano())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.quit:
			return
		case <-tick.C:
		}
	}
}

// topicCollector exports each topic's PostgreSQL measurements, labelled by
// topic; the oldest message's age is computed at scrape time.
type topicCollector struct {
	r       *Reader
	backlog *prometheus.Desc
	age     *prometheus.Desc
}

func newTopicCollector(r *Reader) *topicCollector {
	return &topicCollector{
		r: r,
		backlog: prometheus.NewDesc("mqreader_backlog_messages",
			"Messages of the topic in PostgreSQL within this reader's partition range (ready, leased or awaiting delete), "+
				"measured every READER_STATS_INTERVAL_MS: counted up to READER_BACKLOG_COUNT_CAP, estimated from pg_class beyond.",
			[]string{"topic"}, nil),
		age: prometheus.NewDesc("mqreader_oldest_message_age_seconds",
			"Age of the oldest message of the topic in PostgreSQL within this reader's partition range (0 when there is none), "+
				"as of the last measurement.",
			[]string{"topic"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *topicCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.age
}

// Collect implements prometheus.Collector.
func (c *topicCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for name, t := range *c.r.topics.Load() {
		ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(t.dbBacklog.Load()), name)
		age := 0.0
		if ns := t.oldestNanos.Load(); ns != 0 {
			age = max(0, now.Sub(time.Unix(0, ns)).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age, name)
	}
}
