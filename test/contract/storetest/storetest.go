// Package storetest is the contract suite every ports.TelemetryStore adapter
// runs: one behaviour, every backend. An adapter's conformance test calls Run
// with a constructor for a fresh, empty store; every subtest gets its own
// store and runs in parallel. RunBenchmarks measures every backend on the
// same workload.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// NewStore builds a fresh, empty store; it registers its own cleanup.
type NewStore func(t testing.TB) ports.TelemetryStore

// Options configure a store for the suite's lifecycle cases.
type Options struct {
	// Retention and RollupRetention as in the adapters' options (0: forever).
	Retention, RollupRetention time.Duration
	// Now is the store's clock; nil is time.Now.
	Now func() time.Time
}

// NewStoreWith builds a fresh, empty store with opts. The registry must be
// exact (no coarse last_seen) for the suite.
type NewStoreWith func(t testing.TB, opts Options) ports.TelemetryStore

// DeadLetterLister is implemented by stores that can list their dead letters
// (the memory store); the suite then checks what WriteDeadLetters kept.
type DeadLetterLister interface {
	DeadLetters(ctx context.Context) ([]domain.DeadLetter, error)
}

// base is the suite's reference instant (the shipped DCGM dump's date).
var base = time.Date(2025, 7, 18, 13, 42, 33, 0, time.UTC)

// Run runs the whole contract against stores made by newStoreWith.
func Run(t *testing.T, newStoreWith NewStoreWith) {
	t.Helper()
	newStore := func(t testing.TB) ports.TelemetryStore { return newStoreWith(t, Options{}) }
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore NewStore)
	}{
		{"WriteBatchInsertsAndRoundTrips", testWriteBatchRoundTrip},
		{"WriteBatchIdempotent", testIdempotent},
		{"WriteBatchAtomicOnInvalidRecord", testAtomicInvalid},
		{"WriteBatchEmpty", testEmptyBatch},
		{"ConcurrentWriters", testConcurrentWriters},
		{"GPURegistry", testRegistry},
		{"GPURegistryOrder", testRegistryOrder},
		{"QueryWindow", testQueryWindow},
		{"QueryPaging", testPaging},
		{"QueryRejects", testQueryRejects},
		{"UnknownGPU", testUnknownGPU},
		{"StreamMatchesPaging", testStreamMatchesPaging},
		{"StreamStops", testStreamStops},
		{"ValueRoundTrip", testValueRoundTrip},
		{"TimestampRoundTrip", testTimestampRoundTrip},
		{"DeadLetters", testDeadLetters},
		{"DeadLetterPages", testDeadLetterPages},
		{"PipelineStats", testPipelineStats},
		{"QueryGPUs", testQueryGPUs},
		{"ListMetrics", testListMetrics},
		{"LatestValues", testLatestValues},
		{"SeriesBuckets", testSeriesBuckets},
		{"SeriesRejects", testSeriesRejects},
		{"RollupsMatchRaw", testRollupsMatchRaw},
		{"FleetSummary", testFleetSummary},
		{"AttributeHistory", testAttributeHistory},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore)
		})
	}
	lifecycle := []struct {
		name string
		fn   func(t *testing.T, newStore NewStoreWith)
	}{
		{"PartitionBoundaries", testPartitionBoundaries},
		{"RetentionDropsExpired", testRetentionOnWrite},
		{"RetentionByMaintain", testRetentionByMaintain},
	}
	for _, tc := range lifecycle {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStoreWith)
		})
	}
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func ptr(v float64) *float64 { return &v }

// gpuID returns a GPU UUID unique to the calling test.
func gpuID() string { return "GPU-" + uuid.NewString() }

// rec builds a valid record of gpu at ts with a fresh message UUID.
func rec(gpu string, ts time.Time, metric string, v *float64) domain.Record {
	return domain.Record{
		MsgUUID: uuid.New(),
		Point: domain.Point{
			Timestamp:  ts,
			MetricName: metric,
			GPUIndex:   3,
			Device:     "nvidia3",
			GPUUUID:    gpu,
			ModelName:  "NVIDIA H100 80GB HBM3",
			Hostname:   "host-a",
			Container:  "trainer",
			Pod:        "trainer-0",
			Namespace:  "ml",
			Value:      v,
			LabelsRaw:  `DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="host-a"`,
		},
	}
}

// series builds n records of gpu, one per second from base, cycling
// through metrics.
func series(gpu string, n int, metrics ...string) []domain.Record {
	if len(metrics) == 0 {
		metrics = []string{"DCGM_FI_DEV_GPU_UTIL"}
	}
	out := make([]domain.Record, n)
	for i := range out {
		out[i] = rec(gpu, base.Add(time.Duration(i)*time.Second), metrics[i%len(metrics)], ptr(float64(i)))
	}
	return out
}

func write(t *testing.T, s ports.TelemetryStore, records []domain.Record) ports.WriteResult {
	t.Helper()
	res, err := s.WriteBatch(ctxOf(t), records)
	require.NoError(t, err)
	return res
}

// all pages through q with limit and returns every row and the page count.
func all(t *testing.T, s ports.TelemetryStore, q ports.TelemetryQuery) ([]domain.Record, int) {
	t.Helper()
	var out []domain.Record
	pages := 0
	for {
		page, err := s.QueryTelemetry(ctxOf(t), q)
		require.NoError(t, err)
		pages++
		require.LessOrEqual(t, len(page.Records), q.Limit)
		out = append(out, page.Records...)
		if page.Next == nil {
			return out, pages
		}
		require.Len(t, page.Records, q.Limit, "a page with a next cursor is full")
		require.Less(t, pages, 10_000, "paging does not terminate")
		last := page.Records[len(page.Records)-1]
		require.True(t, page.Next.Timestamp.Equal(last.Timestamp))
		require.Equal(t, last.ID, page.Next.ID)
		q.After = page.Next
	}
}

// sampleKey is a stored sample's identity within one GPU's rows (the
// store keeps no message UUID: ADR 0004).
func sampleKey(r domain.Record) string {
	return fmt.Sprintf("%s@%d", r.MetricName, r.Timestamp.UnixMicro())
}

func msgIDs(records []domain.Record) []string {
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = sampleKey(r)
	}
	return out
}

// requireOrdered checks rows are strictly ascending in (timestamp, id).
func requireOrdered(t *testing.T, rows []domain.Record) {
	t.Helper()
	for i := 1; i < len(rows); i++ {
		a, b := rows[i-1], rows[i]
		ok := a.Timestamp.Before(b.Timestamp) || (a.Timestamp.Equal(b.Timestamp) && a.ID < b.ID)
		require.True(t, ok, "rows %d and %d out of (timestamp, id) order: (%s,%d) then (%s,%d)",
			i-1, i, a.Timestamp, a.ID, b.Timestamp, b.ID)
	}
}

// selected returns the message ids of want that keep accepts, sorted (a set:
// the order among rows sharing a timestamp is the store's id order).
func selected(want []domain.Record, keep func(domain.Record) bool) []string {
	var out []string
	for _, r := range want {
		if keep(r) {
			out = append(out, sampleKey(r))
		}
	}
	return sortedIDs(out)
}

func sortedIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func testWriteBatchRoundTrip(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	in := series(gpu, 10, "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE")
	res := write(t, s, in)
	require.Equal(t, ports.WriteResult{Inserted: 10}, res)

	page, err := s.QueryTelemetry(ctxOf(t), ports.TelemetryQuery{GPUUUID: gpu, Limit: 100})
	require.NoError(t, err)
	require.Nil(t, page.Next)
	require.Len(t, page.Records, 10)
	requireOrdered(t, page.Records)
	ids := map[string]int64{}
	for i, got := range page.Records {
		want := in[i]
		require.Positive(t, got.ID, "the series id")
		if id, ok := ids[got.MetricName]; ok {
			require.Equal(t, id, got.ID, "one series per metric and attribute set")
		}
		ids[got.MetricName] = got.ID
		require.Equal(t, uuid.Nil, got.MsgUUID, "the message UUID is not stored")
		require.True(t, want.Timestamp.Equal(got.Timestamp))
		got.ID, got.Timestamp, got.MsgUUID = 0, want.Timestamp, want.MsgUUID
		require.Equal(t, want, got)
	}
	require.Len(t, ids, 2)
}

func testIdempotent(t *testing.T, newStore NewStore) {
	gpu := gpuID()
	first := series(gpu, 5)
	more := series(gpu, 8)[5:]
	repeated := rec(gpu, base.Add(time.Hour), "DCGM_FI_DEV_GPU_UTIL", ptr(1))
	tests := []struct {
		name   string
		before []domain.Record
		batch  []domain.Record
		want   ports.WriteResult
		rows   int
	}{
		{"same batch twice", first, first, ports.WriteResult{Duplicates: 5}, 5},
		{"new and old mixed", first, append(slices.Clone(first[2:]), more...), ports.WriteResult{Inserted: 3, Duplicates: 3}, 8},
		{"repeat inside one batch", nil, []domain.Record{repeated, first[0], repeated}, ports.WriteResult{Inserted: 2, Duplicates: 1}, 2},
		{"repeat inside one batch of stored", first[:1], []domain.Record{first[0], first[0]}, ports.WriteResult{Duplicates: 2}, 1},
		{"redelivered as a new message", first, redelivered(first), ports.WriteResult{Duplicates: 5}, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			if tc.before != nil {
				write(t, s, tc.before)
			}
			require.Equal(t, tc.want, write(t, s, tc.batch))
			rows, _ := all(t, s, ports.TelemetryQuery{GPUUUID: gpu, Limit: 100})
			require.Len(t, rows, tc.rows)
			seen := map[string]bool{}
			for _, r := range rows {
				require.False(t, seen[sampleKey(r)], "sample %s stored twice", sampleKey(r))
				seen[sampleKey(r)] = true
			}
		})
	}
}

func testAtomicInvalid(t *testing.T, newStore NewStore) {
	tests := []struct {
		name  string
		spoil func(r *domain.Record)
	}{
		{"empty gpu uuid", func(r *domain.Record) { r.GPUUUID = "" }},
		{"empty metric", func(r *domain.Record) { r.MetricName = "" }},
		{"zero timestamp", func(r *domain.Record) { r.Timestamp = time.Time{} }},
		{"negative gpu index", func(r *domain.Record) { r.GPUIndex = -1 }},
		{"gpu index beyond int32", func(r *domain.Record) { r.GPUIndex = math.MaxInt32 + 1 }},
		{"nan value", func(r *domain.Record) { r.Value = ptr(math.NaN()) }},
		{"blank sentinel value", func(r *domain.Record) { r.Value = ptr(9.223372036854775794e18) }},
		{"nil message uuid", func(r *domain.Record) { r.MsgUUID = uuid.Nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			gpu := gpuID()
			batch := series(gpu, 6)
			tc.spoil(&batch[3])
			_, err := s.WriteBatch(ctxOf(t), batch)
			require.ErrorIs(t, err, ports.ErrInvalidArgument)

			gpus, err := s.ListGPUs(ctxOf(t))
			require.NoError(t, err)
			require.Empty(t, gpus, "the registry is untouched")
			_, err = s.QueryTelemetry(ctxOf(t), ports.TelemetryQuery{GPUUUID: gpu, Limit: 10})
			require.ErrorIs(t, err, ports.ErrNotFound, "nothing of the batch is stored")

			// The valid part alone is then accepted in full.
			res := write(t, s, slices.Delete(slices.Clone(batch), 3, 4))
			require.Equal(t, ports.WriteResult{Inserted: 5}, res)
		})
	}
}

func testEmptyBatch(t *testing.T, newStore NewStore) {
	s := newStore(t)
	for _, batch := range [][]domain.Record{nil, {}} {
		require.Equal(t, ports.WriteResult{}, write(t, s, batch))
	}
	gpus, err := s.ListGPUs(ctxOf(t))
	require.NoError(t, err)
	require.Empty(t, gpus)
}

// testConcurrentWriters writes overlapping batches from several goroutines:
// every message is inserted exactly once across all of them.
func testConcurrentWriters(t *testing.T, newStore NewStore) {
	s := newStore(t)
	const writers, gpusN, perGPU = 8, 6, 40
	gpus := make([]string, gpusN)
	for i := range gpus {
		gpus[i] = gpuID()
	}
	var pool []domain.Record
	for _, g := range gpus {
		pool = append(pool, series(g, perGPU)...)
	}
	var wg sync.WaitGroup
	results := make(chan ports.WriteResult, writers*4)
	errs := make(chan error, writers*4)
	for w := range writers {
		wg.Go(func() {
			// Each writer sends the whole pool in 4 batches, in its own
			// order, so writers race on the same messages and GPUs.
			order := slices.Clone(pool)
			if w%2 == 1 {
				slices.Reverse(order)
			}
			rot := (w * len(order)) / writers
			order = append(order[rot:], order[:rot]...)
			for chunk := range slices.Chunk(order, len(order)/4) {
				res, err := s.WriteBatch(context.Background(), chunk)
				errs <- err
				results <- res
			}
		})
	}
	wg.Wait()
	close(errs)
	close(results)
	for err := range errs {
		require.NoError(t, err)
	}
	var total ports.WriteResult
	for r := range results {
		total.Inserted += r.Inserted
		total.Duplicates += r.Duplicates
	}
	require.Equal(t, len(pool), total.Inserted)
	require.Equal(t, (writers-1)*len(pool), total.Duplicates)
	for _, g := range gpus {
		rows, _ := all(t, s, ports.TelemetryQuery{GPUUUID: g, Limit: 1000})
		require.Len(t, rows, perGPU)
	}
	listed, err := s.ListGPUs(ctxOf(t))
	require.NoError(t, err)
	require.Len(t, listed, gpusN)
	for _, g := range listed {
		require.True(t, base.Add((perGPU-1)*time.Second).Equal(g.LastSeen), "last_seen is the newest timestamp")
	}
}

func testRegistry(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	at := func(d time.Duration, host, model string) domain.Record {
		r := rec(gpu, base.Add(d), "DCGM_FI_DEV_GPU_UTIL", ptr(1))
		r.Hostname, r.ModelName = host, model
		return r
	}
	find := func(t *testing.T) domain.GPU {
		t.Helper()
		gpus, err := s.ListGPUs(ctxOf(t))
		require.NoError(t, err)
		require.Len(t, gpus, 1, "each GPU is listed once")
		return gpus[0]
	}

	// Within one batch the newest timestamp wins, wherever it sits.
	write(t, s, []domain.Record{at(time.Minute, "host-a", "H100"), at(3*time.Minute, "host-a", "H100"), at(2*time.Minute, "host-a", "H100")})
	g := find(t)
	require.Equal(t, domain.GPU{UUID: gpu, Hostname: "host-a", GPUIndex: 3, Device: "nvidia3", ModelName: "H100", LastSeen: g.LastSeen}, g)
	require.True(t, base.Add(3*time.Minute).Equal(g.LastSeen), "last_seen %s", g.LastSeen)

	// An older sample (a late redelivery) does not move last_seen back.
	write(t, s, []domain.Record{at(0, "host-a", "H100")})
	require.True(t, base.Add(3*time.Minute).Equal(find(t).LastSeen))

	// A newer sample with changed attributes updates them.
	write(t, s, []domain.Record{at(5*time.Minute, "host-b", "H200")})
	g = find(t)
	require.Equal(t, "host-b", g.Hostname)
	require.Equal(t, "H200", g.ModelName)
	require.True(t, base.Add(5*time.Minute).Equal(g.LastSeen))
	require.Equal(t, time.UTC, g.LastSeen.Location())
}

func testRegistryOrder(t *testing.T, newStore NewStore) {
	s := newStore(t)
	type gpuKey struct {
		uuid, host string
		index      int
	}
	// Written in scrambled order; listed by hostname, gpu index, uuid.
	want := []gpuKey{
		{"GPU-a1", "host-a", 0},
		{"GPU-a2", "host-a", 0},
		{"GPU-a0", "host-a", 1},
		{"GPU-b9", "host-a", 10},
		{"GPU-00", "host-b", 0},
		{"GPU-01", "host-b", 7},
	}
	var batch []domain.Record
	for _, i := range []int{4, 2, 5, 0, 3, 1} {
		k := want[i]
		for n := range 3 {
			r := rec(k.uuid, base.Add(time.Duration(n)*time.Second), "DCGM_FI_DEV_GPU_TEMP", ptr(40))
			r.Hostname, r.GPUIndex, r.Device = k.host, k.index, fmt.Sprintf("nvidia%d", k.index)
			batch = append(batch, r)
		}
	}
	write(t, s, batch)
	gpus, err := s.ListGPUs(ctxOf(t))
	require.NoError(t, err)
	got := make([]gpuKey, len(gpus))
	for i, g := range gpus {
		got[i] = gpuKey{g.UUID, g.Hostname, g.GPUIndex}
		require.Equal(t, fmt.Sprintf("nvidia%d", g.GPUIndex), g.Device)
		require.True(t, base.Add(2*time.Second).Equal(g.LastSeen))
	}
	require.Equal(t, want, got)
}

func testQueryWindow(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu, other := gpuID(), gpuID()
	in := series(gpu, 10, "util", "power")
	write(t, s, append(slices.Clone(in), series(other, 10, "util", "power")...))
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	tests := []struct {
		name       string
		start, end time.Time
		metric     string
		limit      int
		want       []int // indexes into in
		more       bool
	}{
		{"both bounds inclusive", at(2), at(5), "", 100, []int{2, 3, 4, 5}, false},
		{"single instant", at(4), at(4), "", 100, []int{4}, false},
		{"zero start is unbounded", time.Time{}, at(3), "", 100, []int{0, 1, 2, 3}, false},
		{"zero end is unbounded", at(7), time.Time{}, "", 100, []int{7, 8, 9}, false},
		{"no bounds", time.Time{}, time.Time{}, "", 100, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, false},
		{"bounds in another zone", at(2).In(time.FixedZone("X", -7*3600)), at(3).In(time.FixedZone("Y", 3600)), "", 100, []int{2, 3}, false},
		{"empty window", at(20), at(30), "", 100, nil, false},
		{"metric filter", at(1), at(6), "power", 100, []int{1, 3, 5}, false},
		{"unknown metric", time.Time{}, time.Time{}, "nope", 100, nil, false},
		{"limit", time.Time{}, time.Time{}, "", 3, []int{0, 1, 2}, true},
		{"limit exactly the rest", at(6), time.Time{}, "", 4, []int{6, 7, 8, 9}, false},
		{"limit with filter", time.Time{}, time.Time{}, "util", 2, []int{0, 2}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			page, err := s.QueryTelemetry(ctxOf(t), ports.TelemetryQuery{
				GPUUUID: gpu, Start: tc.start, End: tc.end, MetricName: tc.metric, Limit: tc.limit})
			require.NoError(t, err)
			var want []string
			for _, i := range tc.want {
				want = append(want, sampleKey(in[i]))
			}
			require.Equal(t, want, nilIfEmpty(msgIDs(page.Records)))
			require.Equal(t, tc.more, page.Next != nil, "next cursor")
		})
	}
}

func nilIfEmpty(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	return ids
}

func testPaging(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu, other := gpuID(), gpuID()
	var in []domain.Record
	// 12 instants; at each, 5 metrics share one timestamp, so pages of 7
	// split runs of equal timestamps and must tiebreak on id.
	for i := range 12 {
		ts := base.Add(time.Duration(i) * time.Minute)
		for _, m := range []string{"util", "power", "temp", "fb_used", "sm_clock"} {
			in = append(in, rec(gpu, ts, m, ptr(float64(i))))
		}
	}
	// 30 rows at one single instant (written in two batches).
	same := base.Add(time.Hour)
	for i := range 30 {
		in = append(in, rec(gpu, same, fmt.Sprintf("m%02d", i), ptr(float64(i))))
	}
	// Written out of time order, mixed with another GPU's rows.
	write(t, s, append(slices.Clone(in[60:75]), series(other, 20, "util")...))
	write(t, s, in[30:60])
	write(t, s, in[:30])
	write(t, s, in[75:])

	tests := []struct {
		name       string
		start, end time.Time
		metric     string
		limit      int
		keep       func(domain.Record) bool
	}{
		{"all, limit 7", time.Time{}, time.Time{}, "", 7, func(domain.Record) bool { return true }},
		{"all, limit 1", time.Time{}, time.Time{}, "", 1, func(domain.Record) bool { return true }},
		{"exact multiple, limit 10", time.Time{}, time.Time{}, "", 10, func(domain.Record) bool { return true }},
		{"window, limit 7", base.Add(3 * time.Minute), base.Add(9 * time.Minute), "", 7, func(r domain.Record) bool {
			return !r.Timestamp.Before(base.Add(3*time.Minute)) && !r.Timestamp.After(base.Add(9*time.Minute))
		}},
		{"metric, limit 7", time.Time{}, time.Time{}, "m01", 7, func(r domain.Record) bool { return r.MetricName == "m01" }},
		{"one instant, limit 7", same, same, "", 7, func(r domain.Record) bool { return r.Timestamp.Equal(same) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := ports.TelemetryQuery{GPUUUID: gpu, Start: tc.start, End: tc.end, MetricName: tc.metric, Limit: tc.limit}
			rows, pages := all(t, s, q)
			want := selected(in, tc.keep)
			require.NotEmpty(t, want)
			require.Equal(t, want, sortedIDs(msgIDs(rows)), "every matching row exactly once")
			requireOrdered(t, rows)
			q.Limit = len(in) + 1
			whole, err := s.QueryTelemetry(ctxOf(t), q)
			require.NoError(t, err)
			require.Nil(t, whole.Next)
			require.Equal(t, msgIDs(whole.Records), msgIDs(rows), "pages concatenate to the one-page answer")
			wantPages := max(1, (len(want)+tc.limit-1)/tc.limit)
			require.Equal(t, wantPages, pages, "next is nil exactly when the window is exhausted")
		})
	}
}

func testQueryRejects(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	write(t, s, series(gpu, 3))
	tests := []struct {
		name   string
		q      ports.TelemetryQuery
		stream bool // also invalid for StreamTelemetry
	}{
		{"zero limit", ports.TelemetryQuery{GPUUUID: gpu}, false},
		{"negative limit", ports.TelemetryQuery{GPUUUID: gpu, Limit: -1}, false},
		{"end before start", ports.TelemetryQuery{GPUUUID: gpu, Limit: 5, Start: base.Add(time.Second), End: base}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := s.QueryTelemetry(ctxOf(t), tc.q)
			require.ErrorIs(t, err, ports.ErrInvalidArgument)
			calls := 0
			err = s.StreamTelemetry(ctxOf(t), tc.q, func(domain.Record) error { calls++; return nil })
			if tc.stream {
				require.ErrorIs(t, err, ports.ErrInvalidArgument)
				require.Zero(t, calls)
			} else {
				require.NoError(t, err, "streams ignore the limit")
				require.Equal(t, 3, calls)
			}
		})
	}
}

func testUnknownGPU(t *testing.T, newStore NewStore) {
	s := newStore(t)
	write(t, s, series(gpuID(), 3))
	q := ports.TelemetryQuery{GPUUUID: gpuID(), Limit: 10}
	_, err := s.QueryTelemetry(ctxOf(t), q)
	require.ErrorIs(t, err, ports.ErrNotFound)
	called := false
	err = s.StreamTelemetry(ctxOf(t), q, func(domain.Record) error { called = true; return nil })
	require.ErrorIs(t, err, ports.ErrNotFound)
	require.False(t, called, "fn is not called for an unknown GPU")
}

func testStreamMatchesPaging(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	// More rows than a typical internal chunk, several per instant.
	var in []domain.Record
	for i := range 700 {
		in = append(in, rec(gpu, base.Add(time.Duration(i/4)*time.Second), fmt.Sprintf("m%d", i%4), ptr(float64(i))))
	}
	write(t, s, in[350:])
	write(t, s, in[:350])
	tests := []struct {
		name string
		q    ports.TelemetryQuery
	}{
		{"all", ports.TelemetryQuery{}},
		{"window", ports.TelemetryQuery{Start: base.Add(10 * time.Second), End: base.Add(100 * time.Second)}},
		{"metric", ports.TelemetryQuery{MetricName: "m2"}},
		{"after a cursor", ports.TelemetryQuery{}}, // cursor filled below
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := tc.q
			q.GPUUUID = gpu
			if tc.name == "after a cursor" {
				page, err := s.QueryTelemetry(ctxOf(t), ports.TelemetryQuery{GPUUUID: gpu, Limit: 123})
				require.NoError(t, err)
				q.After = page.Next
			}
			q.Limit = 7
			paged, _ := all(t, s, q)
			q.Limit = 0 // ignored by streams
			var streamed []domain.Record
			require.NoError(t, s.StreamTelemetry(ctxOf(t), q, func(r domain.Record) error {
				streamed = append(streamed, r)
				return nil
			}))
			require.NotEmpty(t, streamed)
			require.Equal(t, paged, streamed)
		})
	}
}

func testStreamStops(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	write(t, s, series(gpu, 600))
	errStop := errors.New("client went away")
	tests := []struct {
		name    string
		run     func(ctx context.Context, cancel context.CancelFunc, calls *int) error
		wantErr error
	}{
		{"fn error", func(ctx context.Context, _ context.CancelFunc, calls *int) error {
			return s.StreamTelemetry(ctx, ports.TelemetryQuery{GPUUUID: gpu}, func(domain.Record) error {
				*calls++
				if *calls == 5 {
					return errStop
				}
				return nil
			})
		}, errStop},
		{"context cancelled", func(ctx context.Context, cancel context.CancelFunc, calls *int) error {
			return s.StreamTelemetry(ctx, ports.TelemetryQuery{GPUUUID: gpu}, func(domain.Record) error {
				*calls++
				if *calls == 5 {
					cancel()
				}
				return nil
			})
		}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(ctxOf(t))
			defer cancel()
			calls := 0
			err := tc.run(ctx, cancel, &calls)
			require.ErrorIs(t, err, tc.wantErr)
			require.Equal(t, 5, calls, "no row is delivered after the stop")
		})
	}
}

func testValueRoundTrip(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	values := []*float64{nil, ptr(0), ptr(-1.5), ptr(1e-9), ptr(123456.789), ptr(4294967294)}
	var batch []domain.Record
	for i, v := range values {
		batch = append(batch, rec(gpu, base.Add(time.Duration(i)*time.Second), "v", v))
	}
	write(t, s, batch)
	page, err := s.QueryTelemetry(ctxOf(t), ports.TelemetryQuery{GPUUUID: gpu, Limit: 100})
	require.NoError(t, err)
	require.Len(t, page.Records, len(values))
	for i, r := range page.Records {
		if values[i] == nil {
			require.Nil(t, r.Value, "a missing value stays null, never 0")
			continue
		}
		require.NotNil(t, r.Value)
		require.Equal(t, *values[i], *r.Value)
	}
}

func testTimestampRoundTrip(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	zone := time.FixedZone("IST", 5*3600+1800)
	tests := []struct {
		name string
		in   time.Time
		want time.Time
	}{
		{"utc", base, base},
		{"other zone", base.Add(time.Second).In(zone), base.Add(time.Second)},
		{"microseconds kept", base.Add(2*time.Second + 123456*time.Microsecond), base.Add(2*time.Second + 123456*time.Microsecond)},
		{"nanoseconds dropped", base.Add(3*time.Second + 123456789*time.Nanosecond), base.Add(3*time.Second + 123456*time.Microsecond)},
	}
	batch := make([]domain.Record, len(tests))
	for i, tc := range tests {
		batch[i] = rec(gpu, tc.in, "t", ptr(1))
	}
	write(t, s, batch)
	page, err := s.QueryTelemetry(ctxOf(t), ports.TelemetryQuery{GPUUUID: gpu, Limit: 100})
	require.NoError(t, err)
	require.Len(t, page.Records, len(tests))
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := page.Records[i].Timestamp
			require.Equal(t, time.UTC, got.Location())
			require.True(t, tc.want.Equal(got), "want %s, got %s", tc.want, got)
		})
	}
	// A bound equal to a stored microsecond instant includes it.
	exact := tests[2].want.In(zone)
	page, err = s.QueryTelemetry(ctxOf(t), ports.TelemetryQuery{GPUUUID: gpu, Start: exact, End: exact, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, []string{sampleKey(batch[2])}, msgIDs(page.Records))
}

func testDeadLetters(t *testing.T, newStore NewStore) {
	s := newStore(t)
	a := domain.DeadLetter{MsgUUID: uuid.New(), Topic: domain.TelemetryTopic, Payload: []byte(`{"bad":`), Reason: "unexpected end of JSON input"}
	b := domain.DeadLetter{MsgUUID: uuid.New(), Topic: domain.TelemetryTopic, Payload: []byte(`{}`), Reason: "gpu_uuid is empty"}
	c := domain.DeadLetter{MsgUUID: uuid.New(), Topic: domain.TelemetryTopic, Payload: []byte(`"x"`), Reason: "not an object"}
	require.NoError(t, s.WriteDeadLetters(ctxOf(t), []domain.DeadLetter{a, b}))
	again := b
	again.Reason = "a second reason is ignored"
	require.NoError(t, s.WriteDeadLetters(ctxOf(t), []domain.DeadLetter{again, c, c}))
	require.NoError(t, s.WriteDeadLetters(ctxOf(t), nil))
	lister, ok := s.(DeadLetterLister)
	if !ok {
		return // the adapter's own tests check what it kept
	}
	got, err := lister.DeadLetters(ctxOf(t))
	require.NoError(t, err)
	require.Equal(t, []domain.DeadLetter{a, b, c}, got)
}

// RunBenchmarks measures the store on the shared workload: writing batches
// of 500 records, and reading 1000-row pages.
func RunBenchmarks(b *testing.B, newStore NewStore) {
	b.Run("WriteBatch500", func(b *testing.B) {
		s := newStore(b)
		gpus := make([]string, 50)
		for i := range gpus {
			gpus[i] = gpuID()
		}
		ctx := context.Background()
		ts := base
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			batch := make([]domain.Record, 500)
			for i := range batch {
				ts = ts.Add(time.Millisecond)
				batch[i] = rec(gpus[i%len(gpus)], ts, "DCGM_FI_DEV_GPU_UTIL", ptr(float64(i)))
			}
			b.StartTimer()
			res, err := s.WriteBatch(ctx, batch)
			if err != nil || res.Inserted != len(batch) {
				b.Fatalf("write batch: %+v, %v", res, err)
			}
		}
		b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("QueryPage1000", func(b *testing.B) {
		s := newStore(b)
		gpu := gpuID()
		ctx := context.Background()
		const rows = 10_000
		for off := 0; off < rows; off += 1000 {
			batch := make([]domain.Record, 1000)
			for i := range batch {
				batch[i] = rec(gpu, base.Add(time.Duration(off+i)*time.Second), "DCGM_FI_DEV_GPU_UTIL", ptr(float64(i)))
			}
			if _, err := s.WriteBatch(ctx, batch); err != nil {
				b.Fatalf("seed: %v", err)
			}
		}
		var after *ports.Cursor
		b.ReportAllocs()
		for b.Loop() {
			page, err := s.QueryTelemetry(ctx, ports.TelemetryQuery{GPUUUID: gpu, Limit: 1000, After: after})
			if err != nil || len(page.Records) != 1000 {
				b.Fatalf("query: %d rows, %v", len(page.Records), err)
			}
			after = page.Next
			if after == nil || after.Timestamp.After(base.Add((rows-2000)*time.Second)) {
				after = nil // wrap around to keep every page full
			}
		}
		b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}
