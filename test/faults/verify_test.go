//go:build faults

package faults

import (
	"context"
	"fmt"
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
	stray := uuid.New()
	tests := []struct {
		name      string
		h         history
		telemetry []uuid.UUID // rows, each with its own content unless sameContent
		same      bool        // give every row the same content
		dead      []uuid.UUID
		queued    int
		foreign   []uuid.UUID // acknowledged outside the history
		want      string      // a substring of the one problem expected; "" for none
	}{
		{name: "clean", h: history{acked(a, b), unacked(c)}, telemetry: []uuid.UUID{a.id, b.id}},
		{name: "an unacknowledged message may land", h: history{acked(a), unacked(c)}, telemetry: []uuid.UUID{a.id, c.id}},
		{name: "poison in dead letters", h: history{acked(a, p)}, telemetry: []uuid.UUID{a.id}, dead: []uuid.UUID{p.id}},
		{name: "acknowledged message lost", h: history{acked(a, b)}, telemetry: []uuid.UUID{a.id}, want: "acknowledged messages lost (1 of 2): b"},
		{name: "acknowledged poison lost", h: history{acked(a, p)}, telemetry: []uuid.UUID{a.id}, want: "acknowledged messages lost"},
		{name: "row nobody published", h: history{acked(a)}, telemetry: []uuid.UUID{a.id, stray}, want: "stored messages nobody published"},
		{name: "same content twice", h: history{acked(a, b)}, telemetry: []uuid.UUID{a.id, b.id}, same: true, want: "1 duplicated telemetry rows"},
		{name: "poison stored as telemetry", h: history{acked(a, p)}, telemetry: []uuid.UUID{a.id, p.id}, want: "p (poison) in telemetry"},
		{name: "good message dead-lettered", h: history{acked(a, b)}, telemetry: []uuid.UUID{a.id}, dead: []uuid.UUID{b.id}, want: "b (good) in dead_letters"},
		{name: "queue not drained", h: history{acked(a)}, telemetry: []uuid.UUID{a.id}, queued: 3, want: "queue not empty: 3 messages"},
		{name: "foreign acknowledged message lost", h: history{acked(a)}, telemetry: []uuid.UUID{a.id}, foreign: []uuid.UUID{stray},
			want: "acknowledged streamer messages lost"},
		{name: "answer the protocol does not allow", h: history{{msgs: []msgRecord{a}, attempts: 1, unexpected: "400 nope"}},
			telemetry: []uuid.UUID{a.id}, want: "answers the protocol does not allow: 400 nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSystem(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for i, id := range tt.telemetry {
				labels := fmt.Sprint(i)
				if tt.same {
					labels = "same"
				}
				_, err := s.pool.Exec(ctx, `INSERT INTO telemetry (uuid, gpu_uuid, gpu_index, metric_name, "timestamp", labels_raw)
					VALUES ($1, 'GPU-1', 0, 'DCGM_FI_DEV_GPU_UTIL', '2025-07-18T20:42:34Z', $2)`, id, labels)
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
			_, problems := s.verify(tt.h, expectations{foreignAcked: tt.foreign})
			if tt.want == "" {
				require.Empty(t, problems)
				return
			}
			require.Len(t, problems, 1, "%q", problems)
			require.Contains(t, problems[0], tt.want)
		})
	}
}
