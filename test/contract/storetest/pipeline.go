package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// testDeadLetterPages walks the dead letters newest first in pages: every
// letter exactly once, ids descending, payloads truncated by characters
// with their full size kept, bad queries refused.
func testDeadLetterPages(t *testing.T, newStore NewStore) {
	s := newStore(t)
	ctx := ctxOf(t)
	empty, err := s.ListDeadLetters(ctx, ports.DeadLetterQuery{Limit: 10})
	require.NoError(t, err)
	require.Empty(t, empty.Letters)
	require.Zero(t, empty.Next)

	before := time.Now().Add(-time.Minute)
	var written []domain.DeadLetter
	for i := range 7 {
		l := domain.DeadLetter{MsgUUID: uuid.New(), Topic: domain.TelemetryTopic,
			Payload: []byte(fmt.Sprintf(`{"n":%d,"s":"é%s"}`, i, strings.Repeat("x", i))), Reason: fmt.Sprintf("reason %d", i)}
		written = append(written, l)
		// One write per letter: ids follow the order letters were stored.
		require.NoError(t, s.WriteDeadLetters(ctx, []domain.DeadLetter{l}))
	}
	// A repeat is ignored and does not take a new id.
	require.NoError(t, s.WriteDeadLetters(ctx, written[:1]))

	var got []ports.StoredDeadLetter
	q := ports.DeadLetterQuery{Limit: 3, PayloadChars: 8}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5, "the walk must end")
		page, err := s.ListDeadLetters(ctx, q)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Letters), q.Limit)
		got = append(got, page.Letters...)
		if page.Next == 0 {
			break
		}
		require.Equal(t, page.Letters[len(page.Letters)-1].ID, page.Next)
		q.Before = page.Next
	}
	require.Len(t, got, len(written))
	for i, l := range got {
		want := written[len(written)-1-i]
		require.Equal(t, want.MsgUUID, l.MsgUUID, "newest first")
		require.Equal(t, want.Topic, l.Topic)
		require.Equal(t, want.Reason, l.Reason)
		require.Equal(t, len(want.Payload), l.PayloadBytes)
		require.Equal(t, string([]rune(string(want.Payload))[:8]), string(l.Payload), "truncated to 8 characters, not bytes")
		require.WithinRange(t, l.CreatedAt, before, time.Now().Add(time.Minute))
		require.Equal(t, time.UTC, l.CreatedAt.Location())
		if i > 0 {
			require.Less(t, l.ID, got[i-1].ID)
		}
	}
	whole, err := s.ListDeadLetters(ctx, ports.DeadLetterQuery{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, written[len(written)-1].Payload, whole.Letters[0].Payload, "PayloadChars 0 keeps the whole payload")

	for _, bad := range []ports.DeadLetterQuery{{Limit: 0}, {Limit: 1, Before: -1}, {Limit: 1, PayloadChars: -1}} {
		_, err := s.ListDeadLetters(ctx, bad)
		require.ErrorIs(t, err, ports.ErrInvalidArgument, "%+v", bad)
	}
}

// testPipelineStats checks the snapshot: hosts from the registry with
// their newest last_seen, the dead-letter count, inserted samples counted
// (eventually: database statistics lag), a backlog that is -1 or a count.
func testPipelineStats(t *testing.T, newStore NewStore) {
	s := newStore(t)
	ctx := ctxOf(t)
	start, err := s.PipelineStats(ctx)
	require.NoError(t, err)
	require.Empty(t, start.Hosts)
	require.Zero(t, start.DeadLetters)
	require.False(t, start.At.IsZero())

	var batch []domain.Record
	for i, host := range []string{"host-b", "host-a", "host-a"} {
		r := rec(gpuID(), base.Add(time.Duration(i)*time.Second), "DCGM_FI_DEV_GPU_TEMP", ptr(40))
		r.Hostname = host
		batch = append(batch, r)
	}
	res, err := s.WriteBatch(ctx, batch)
	require.NoError(t, err)
	require.Equal(t, 3, res.Inserted)
	require.NoError(t, s.WriteDeadLetters(ctx, []domain.DeadLetter{{MsgUUID: uuid.New(), Topic: "t", Payload: []byte("x"), Reason: "r"}}))

	stats, err := s.PipelineStats(ctx)
	require.NoError(t, err)
	require.Equal(t, []ports.HostSeen{
		{Hostname: "host-a", GPUs: 2, LastSeen: base.Add(2 * time.Second)},
		{Hostname: "host-b", GPUs: 1, LastSeen: base},
	}, stats.Hosts)
	require.Equal(t, int64(1), stats.DeadLetters)
	require.False(t, stats.DeadLettersCapped)
	require.GreaterOrEqual(t, stats.QueueBacklog, int64(-1))
	require.False(t, stats.QueueBacklogCapped)
	require.Eventually(t, func() bool {
		st, err := s.PipelineStats(ctx)
		return err == nil && st.SamplesInserted-start.SamplesInserted >= 3
	}, 30*time.Second, 100*time.Millisecond, "inserted samples are counted")
}
