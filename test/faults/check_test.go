//go:build faults

package faults

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
)

// expectations are what a scenario promises beyond the invariants every
// scenario checks.
type expectations struct {
	// drainWithin bounds the time from the end of the fault (publishers
	// stopped) until the queue is empty and nothing more lands.
	drainWithin time.Duration
	// maxRedelivered bounds redeliveries (the readers' redelivered counter
	// and the collectors' duplicate records, whichever is larger) as a share
	// of the acknowledged messages.
	maxRedelivered float64
	// probeRedeliveries are redeliveries the scenario causes on purpose (a
	// probe that leases and releases: mqreader_messages_redelivered_total
	// counts a released message when it is leased again); they do not
	// count against maxRedelivered.
	probeRedeliveries float64
	// foreign says that stored samples without a faults key (the history's
	// messages carry one in their labels) were published by someone else
	// the scenario knows of (the streamer).
	foreign bool
	// foreignSince and foreignAcked: at least foreignAcked samples without
	// a faults key, stamped at or after foreignSince, must be stored (the
	// last undisturbed streamer pass). The store keeps no message UUID
	// (ADR 0004), so they are counted, not named.
	foreignSince time.Time
	foreignAcked int
}

// Stored samples with the message key the publisher put in their labels
// (NULL for the streamer's), and the same for a time range.
const (
	sqlStoredKeys = `SELECT substring(s.labels_raw FROM 'faults_key="([^"]+)"')
FROM telemetry_samples x JOIN telemetry_series s ON s.id = x.series_id`
	sqlForeignSince = `SELECT count(*) FROM telemetry_samples x JOIN telemetry_series s ON s.id = x.series_id
WHERE x.ts >= $1 AND s.labels_raw NOT LIKE '%faults_key="%'`
)

// figures are what a scenario measured; logged for the closing note.
type figures struct {
	publishes     int // publish requests the history holds
	published     int // messages in them
	acked         int // messages acknowledged with a 2xx
	retried       int // publishes that needed more than one attempt
	lostReplies   int // acknowledged on retry as duplicates: an earlier attempt committed but its answer was lost
	unacked       int // messages never acknowledged
	unackedLanded int // … of which were stored anyway (committed, answer lost)
	persisted     int // telemetry rows of the history's messages
	foreign       int // telemetry rows published by others (the streamer)
	deadLettered  int // dead letters of the history's messages
	duplicates    int // telemetry rows beyond one per message (msg_uuid or content)
	lost          int // acknowledged messages stored nowhere
	redelivered   float64
	dupRecords    float64
	expired       float64
	acksRejected  float64
	drain         time.Duration
}

func (f figures) String() string {
	return fmt.Sprintf("publishes=%d published=%d acknowledged=%d retried=%d lost_replies=%d unacknowledged=%d (landed %d) "+
		"persisted=%d foreign=%d dead_lettered=%d duplicates=%d lost=%d redelivered=%.0f duplicate_records=%.0f leases_expired=%.0f acks_rejected=%.0f drain=%s",
		f.publishes, f.published, f.acked, f.retried, f.lostReplies, f.unacked, f.unackedLanded,
		f.persisted, f.foreign, f.deadLettered, f.duplicates, f.lost, f.redelivered, f.dupRecords, f.expired, f.acksRejected,
		f.drain.Round(10*time.Millisecond))
}

// settle waits for the backlog to drain, then fails the test on any
// problem verify finds.
func (s *system) settle(h history, exp expectations) figures {
	s.t.Helper()
	f, problems := s.drainAndVerify(h, exp)
	require.Empty(s.t, problems, "invariants broken (figures: %s)", f)
	return f
}

// drainAndVerify is settle without failing on broken invariants: it
// returns them (the asynchronous failover reports its losses).
func (s *system) drainAndVerify(h history, exp expectations) (figures, []string) {
	s.t.Helper()
	// Drain: the queue is empty, and no row landed since the last look (a
	// publish abandoned mid-flight may still commit just after).
	start := time.Now()
	last := -1
	drained := assert.Eventually(s.t, func() bool {
		n := s.count(`SELECT (SELECT count(*) FROM telemetry_samples) + (SELECT count(*) FROM dead_letters)`)
		queued := s.count(`SELECT count(*) FROM queue_messages`)
		stable := n == last
		last = n
		return queued == 0 && stable
	}, exp.drainWithin, 250*time.Millisecond)
	if !drained {
		s.t.Fatalf("backlog did not drain within %s: still queued by topic and partition: %s", exp.drainWithin, s.queued())
	}
	drain := time.Since(start)
	f, problems := s.verify(h, exp)
	f.drain = drain
	return f, problems
}

// verify checks the invariants against the history h and returns what it
// measured and every broken invariant:
//   - every acknowledged message is stored exactly once: a good one in
//     telemetry, a poison one in dead_letters;
//   - nothing is stored that nobody attempted to publish; an unacknowledged
//     message may be stored (its commit's answer was lost), once;
//   - no message is stored twice (by the key in its labels; the store's
//     primary key rules out two samples of one series and instant);
//   - no publish got an answer the protocol does not allow;
//   - the queue is empty and redeliveries stay within the bound.
func (s *system) verify(h history, exp expectations) (figures, []string) {
	s.t.Helper()
	var f figures
	var problems []string
	fail := func(list []string, format string, args ...any) {
		if len(list) > 0 {
			problems = append(problems, fmt.Sprintf(format, args...)+": "+first(list, 10))
		}
	}
	stored, streamed := s.storedMessages()
	dead := s.uuids(`SELECT msg_uuid FROM dead_letters`)
	for _, n := range stored {
		f.duplicates += n - 1
	}

	attempted := make(map[uuid.UUID]bool) // id → poison
	var missing, misfiled, unexpected []string
	for _, r := range h {
		f.publishes++
		f.published += len(r.msgs)
		if r.unexpected != "" {
			unexpected = append(unexpected, r.unexpected)
		}
		if r.attempts > 1 {
			f.retried++
			if r.acked && r.duplicates > 0 {
				f.lostReplies++
			}
		}
		for _, m := range r.msgs {
			attempted[m.id] = m.poison
			inTel, inDead := stored[m.id] > 0, dead[m.id] > 0
			if m.poison {
				if inDead {
					f.deadLettered++
				}
				if inTel {
					misfiled = append(misfiled, m.key+" (poison) in telemetry")
				}
			} else {
				if inTel {
					f.persisted++
				}
				if inDead {
					misfiled = append(misfiled, m.key+" (good) in dead_letters")
				}
			}
			switch landed := inTel || inDead; {
			case r.acked:
				f.acked++
				if !landed {
					missing = append(missing, m.key)
				}
			default:
				f.unacked++
				if landed {
					f.unackedLanded++
				}
			}
		}
	}
	fail(unexpected, "publishes got answers the protocol does not allow")
	fail(misfiled, "messages stored in the wrong table")
	f.lost = len(missing)
	fail(missing, "acknowledged messages lost (%d of %d)", len(missing), f.acked)

	var unknown []string
	for id := range stored {
		if _, ok := attempted[id]; !ok {
			unknown = append(unknown, id.String())
		}
	}
	if exp.foreign {
		f.foreign = streamed
	} else if streamed > 0 {
		unknown = append(unknown, fmt.Sprintf("%d samples without a faults key", streamed))
	}
	for id := range dead {
		if _, ok := attempted[id]; !ok {
			unknown = append(unknown, id.String()+" (dead letter)")
		}
	}
	fail(unknown, "stored messages nobody published (%d)", len(unknown))
	if exp.foreignAcked > 0 {
		if n := s.count(sqlForeignSince, exp.foreignSince); n < exp.foreignAcked {
			problems = append(problems, fmt.Sprintf("acknowledged streamer messages lost (%d of %d)", exp.foreignAcked-n, exp.foreignAcked))
		}
	}
	if f.duplicates != 0 {
		problems = append(problems, fmt.Sprintf("%d duplicated telemetry rows", f.duplicates))
	}
	if n := s.count(`SELECT count(*) FROM queue_messages`); n != 0 {
		problems = append(problems, fmt.Sprintf("queue not empty: %d messages", n))
	}

	f.redelivered = s.sum("mqreader", "mqreader_messages_redelivered_total")
	f.expired = s.sum("mqreader", "mqreader_leases_expired_total")
	f.dupRecords = s.sum("collector", "collector_records_duplicate_total")
	f.acksRejected = s.sum("collector", "collector_acks_rejected_total")
	if bound := exp.maxRedelivered * float64(f.acked+exp.foreignAcked); max(f.redelivered-exp.probeRedeliveries, f.dupRecords) > bound {
		problems = append(problems, fmt.Sprintf("redeliveries (%.0f redelivered, %.0f of them the probe's, %.0f duplicate records) above the bound of %.0f%% of %d acknowledged",
			f.redelivered, exp.probeRedeliveries, f.dupRecords, 100*exp.maxRedelivered, f.acked+exp.foreignAcked))
	}
	return f, problems
}

// queued describes what is left in queue_messages, for failure messages.
func (s *system) queued() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT topic, partition_key, count(*) FROM queue_messages GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var parts []string
	for rows.Next() {
		var topic string
		var partition, n int
		if err := rows.Scan(&topic, &partition, &n); err != nil {
			return err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s/%d: %d", topic, partition, n))
	}
	return first(parts, 20)
}

// uuids runs a query of one uuid column and counts each value.
func (s *system) uuids(query string) map[uuid.UUID]int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := s.pool.Query(ctx, query)
	require.NoError(s.t, err)
	defer rows.Close()
	out := map[uuid.UUID]int{}
	for rows.Next() {
		var id uuid.UUID
		require.NoError(s.t, rows.Scan(&id))
		out[id]++
	}
	require.NoError(s.t, rows.Err())
	return out
}

// storedMessages reads which messages the stored samples came from (by the
// faults key in their labels), each with its number of samples, and how many
// samples carry no key (the streamer's).
func (s *system) storedMessages() (map[uuid.UUID]int, int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := s.pool.Query(ctx, sqlStoredKeys)
	require.NoError(s.t, err)
	defer rows.Close()
	out, streamed := map[uuid.UUID]int{}, 0
	for rows.Next() {
		var key *string
		require.NoError(s.t, rows.Scan(&key))
		if key == nil {
			streamed++
			continue
		}
		out[domain.MessageID(domain.TelemetryTopic, *key)]++
	}
	require.NoError(s.t, rows.Err())
	return out, streamed
}

// first returns at most n items of list, for failure messages.
func first(list []string, n int) string {
	if len(list) > n {
		return strings.Join(list[:n], ", ") + fmt.Sprintf(" … (%d more)", len(list)-n)
	}
	return strings.Join(list, ", ")
}
