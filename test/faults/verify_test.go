//go:build faults

package faults

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
)

// TestVerifyCatchesViolations runs the invariant checker over hand-made
// histories and tables, so the suite is known to fail when the pipeline
// loses, duplicates or invents a message.
func TestVerifyCatchesViolations(t *testing.T) {
	t.Parallel() // runs after TestFaults, which stops the cluster for a while
	msg := func(key string, poison bool) msgRecord {
		return msgRecord{key: key, id: domain.MessageID(domain.TelemetryTopic, key), poison: poison}
	}
	a, b, c, p := msg("a", false), msg("b", false), msg("c", false), msg("p", true)
	acked := func(ms ...msgRecord) publishRecord { return publishRecord{msgs: ms, acked: true, attempts: 1} }
	unacked := func(ms ...msgRecord) publishRecord { return publishRecord{msgs: ms, attempts: 2} }
	tests := []struct {
		name      string
		h         history
		telemetry []string // faults keys of stored samples, one sample each (at its own instant)
		dead      []uuid.UUID
		queued    int
		streamed  int    // samples without a faults key (the streamer's)
		foreign   int    // streamer samples acknowledged outside the history
		want      string // a substring of the one problem expected; "" for none
	}{
		{name: "clean", h: history{acked(a, b), unacked(c)}, telemetry: []string{"a", "b"}},
		{name: "an unacknowledged message may land", h: history{acked(a), unacked(c)}, telemetry: []string{"a", "c"}},
		{name: "poison in dead letters", h: history{acked(a, p)}, telemetry: []string{"a"}, dead: []uuid.UUID{p.id}},
		{name: "acknowledged message lost", h: history{acked(a, b)}, telemetry: []string{"a"}, want: "acknowledged messages lost (1 of 2): b"},
		{name: "acknowledged poison lost", h: history{acked(a, p)}, telemetry: []string{"a"}, want: "acknowledged messages lost"},
		{name: "row nobody published", h: history{acked(a)}, telemetry: []string{"a", "stray"}, want: "stored messages nobody published"},
		{name: "one message stored twice", h: history{acked(a, b)}, telemetry: []string{"a", "b", "b"}, want: "1 duplicated telemetry rows"},
		{name: "poison stored as telemetry", h: history{acked(a, p)}, telemetry: []string{"a", "p"}, want: "p (poison) in telemetry"},
		{name: "good message dead-lettered", h: history{acked(a, b)}, telemetry: []string{"a"}, dead: []uuid.UUID{b.id}, want: "b (good) in dead_letters"},
		{name: "queue not drained", h: history{acked(a)}, telemetry: []string{"a"}, queued: 3, want: "queue not empty: 3 messages"},
		{name: "foreign acknowledged message lost", h: history{acked(a)}, telemetry: []string{"a"}, streamed: 2, foreign: 3,
			want: "acknowledged streamer messages lost (1 of 3)"},
		{name: "streamer samples counted", h: history{acked(a)}, telemetry: []string{"a"}, streamed: 3, foreign: 3},
		{name: "answer the protocol does not allow", h: history{{msgs: []msgRecord{a}, attempts: 1, unexpected: "400 nope"}},
			telemetry: []string{"a"}, want: "answers the protocol does not allow: 400 nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSystem(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			labels := make([]string, 0, len(tt.telemetry)+tt.streamed)
			for _, key := range tt.telemetry {
				labels = append(labels, `faults_key="`+key+`"`)
			}
			for range tt.streamed {
				labels = append(labels, `Hostname="h"`)
			}
			for i, l := range labels {
				_, err := s.pool.Exec(ctx, `WITH p AS (SELECT telemetry_ensure_partition('telemetry_samples', now())),
s AS (INSERT INTO telemetry_series (gpu_uuid, metric_name, attrs_key, gpu_index, labels_raw, first_seen, last_seen)
    VALUES ('GPU-1', 'DCGM_FI_DEV_GPU_UTIL', telemetry_attrs_key('', 0, '', '', '', '', '', $1), 0, $1, now(), now())
    ON CONFLICT (gpu_uuid, metric_name, attrs_key) DO UPDATE SET last_seen = EXCLUDED.last_seen RETURNING id)
SELECT 1 FROM p, s`, l)
				require.NoError(t, err)
				_, err = s.pool.Exec(ctx, `INSERT INTO telemetry_samples (series_id, ts, value)
SELECT id, now() + $2 * interval '1 second', 1 FROM telemetry_series WHERE labels_raw = $1`, l, i)
				require.NoError(t, err)
			}
			for _, id := range tt.dead {
				_, err := s.pool.Exec(ctx, `INSERT INTO dead_letters (msg_uuid, topic, payload, reason) VALUES ($1, 'telemetry', '1', 'poison')`, id)
				require.NoError(t, err)
			}
			for range tt.queued {
				_, err := s.pool.Exec(ctx, `INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key) VALUES ('telemetry', $1, '1', 7)`, uuid.New())
				require.NoError(t, err)
			}
			_, problems := s.verify(tt.h, expectations{foreign: tt.streamed > 0, foreignAcked: tt.foreign, foreignSince: time.Now().Add(-time.Hour)})
			if tt.want == "" {
				require.Empty(t, problems)
				return
			}
			require.Len(t, problems, 1, "%q", problems)
			require.Contains(t, problems[0], tt.want)
		})
	}
}
