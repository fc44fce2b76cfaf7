package storetest

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// redelivered returns records as a redelivery brings them: the same
// samples under new message UUIDs (the collector's message was published
// twice, or the queue lost its dedup key).
func redelivered(records []domain.Record) []domain.Record {
	out := slices.Clone(records)
	for i := range out {
		out[i].MsgUUID = uuid.New()
	}
	return out
}

func testQueryGPUs(t *testing.T, newStore NewStore) {
	s := newStore(t)
	var batch []domain.Record
	for i := range 7 {
		r := rec(fmt.Sprintf("GPU-%02d", i), base, "DCGM_FI_DEV_GPU_UTIL", ptr(1))
		r.Hostname, r.GPUIndex = fmt.Sprintf("host-%d", i%3), i
		r.ModelName = []string{"H100", "A100"}[i%2]
		batch = append(batch, r)
	}
	write(t, s, batch)
	all, err := s.ListGPUs(ctxOf(t))
	require.NoError(t, err)
	tests := []struct {
		name        string
		host, model string
		limit       int
		keep        func(domain.GPU) bool
	}{
		{"all in one page", "", "", 1000, func(domain.GPU) bool { return true }},
		{"pages of 2", "", "", 2, func(domain.GPU) bool { return true }},
		{"hostname", "host-1", "", 1, func(g domain.GPU) bool { return g.Hostname == "host-1" }},
		{"model", "", "A100", 2, func(g domain.GPU) bool { return g.ModelName == "A100" }},
		{"both", "host-0", "H100", 5, func(g domain.GPU) bool { return g.Hostname == "host-0" && g.ModelName == "H100" }},
		{"nothing", "host-9", "", 5, func(domain.GPU) bool { return false }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			want := []domain.GPU{}
			for _, g := range all {
				if tc.keep(g) {
					want = append(want, g)
				}
			}
			got := []domain.GPU{}
			q := ports.GPUQuery{Hostname: tc.host, ModelName: tc.model, Limit: tc.limit}
			for pages := 1; ; pages++ {
				page, err := s.QueryGPUs(ctxOf(t), q)
				require.NoError(t, err)
				require.LessOrEqual(t, len(page.GPUs), tc.limit)
				got = append(got, page.GPUs...)
				if page.Next == nil {
					require.Equal(t, max(1, (len(want)+tc.limit-1)/tc.limit), pages)
					break
				}
				q.After = page.Next
			}
			require.Equal(t, want, got)
		})
	}
	_, err = s.QueryGPUs(ctxOf(t), ports.GPUQuery{})
	require.ErrorIs(t, err, ports.ErrInvalidArgument)
}

func testListMetrics(t *testing.T, newStore NewStore) {
	s := newStore(t)
	a, b := gpuID(), gpuID()
	write(t, s, append(series(a, 4, "util", "power"), series(b, 2, "util")...))
	got, err := s.ListMetrics(ctxOf(t))
	require.NoError(t, err)
	require.Equal(t, []domain.MetricSeen{{Name: "power", GPUs: 1}, {Name: "util", GPUs: 2}}, got)
}

func testLatestValues(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	newer := []domain.Record{rec(gpu, at(5), "util", ptr(55)), rec(gpu, at(3), "power", nil)}
	older := []domain.Record{rec(gpu, at(4), "util", ptr(44)), rec(gpu, at(1), "power", ptr(11)), rec(gpu, at(2), "power", ptr(22))}
	write(t, s, newer)
	write(t, s, older) // late samples do not displace newer ones
	write(t, s, series(gpuID(), 3, "util"))
	got, err := s.LatestValues(ctxOf(t), gpu)
	require.NoError(t, err)
	require.Equal(t, []domain.LatestValue{
		{MetricName: "power", Timestamp: at(3), Value: nil},
		{MetricName: "util", Timestamp: at(5), Value: ptr(55)},
	}, got)
	_, err = s.LatestValues(ctxOf(t), gpuID())
	require.ErrorIs(t, err, ports.ErrNotFound)
}

// bruteBuckets aggregates the non-null samples of metric in [start, end]
// (end widened to the end of its minute when minutes is set) into buckets
// of step from start.
func bruteBuckets(in []domain.Record, metric string, start, end time.Time, step time.Duration, minutes bool) []domain.Bucket {
	n := domain.BucketCount(start, end, step)
	limit := end
	if minutes {
		limit = end.Truncate(time.Minute).Add(time.Minute - time.Microsecond)
	}
	out := make([]domain.Bucket, n)
	for k := range out {
		lo := start.Add(time.Duration(k) * step)
		var vals []float64
		var lastAt time.Time
		var last float64
		for _, r := range in {
			if r.MetricName != metric || r.Value == nil || r.Timestamp.Before(lo) || !r.Timestamp.Before(lo.Add(step)) || r.Timestamp.After(limit) {
				continue
			}
			vals = append(vals, *r.Value)
			if !r.Timestamp.Before(lastAt) {
				last, lastAt = *r.Value, r.Timestamp
			}
		}
		b := domain.Bucket{Start: lo, Count: len(vals)}
		if len(vals) > 0 {
			sum := 0.0
			for _, v := range vals {
				sum += v
			}
			avg := sum / float64(len(vals))
			b.Min, b.Max, b.Sum, b.Avg, b.Last = ptr(slices.Min(vals)), ptr(slices.Max(vals)), &sum, &avg, &last
		}
		out[k] = b
	}
	return out
}

func requireBuckets(t *testing.T, want, got []domain.Bucket) {
	t.Helper()
	require.Len(t, got, len(want))
	near := func(name string, k int, w, g *float64) {
		if w == nil {
			require.Nil(t, g, "bucket %d %s", k, name)
			return
		}
		require.NotNil(t, g, "bucket %d %s", k, name)
		require.InDelta(t, *w, *g, 1e-9*math.Max(1, math.Abs(*w)), "bucket %d %s", k, name)
	}
	for k := range want {
		require.True(t, want[k].Start.Equal(got[k].Start), "bucket %d start %s, got %s", k, want[k].Start, got[k].Start)
		require.Equal(t, want[k].Count, got[k].Count, "bucket %d count", k)
		near("min", k, want[k].Min, got[k].Min)
		near("max", k, want[k].Max, got[k].Max)
		near("sum", k, want[k].Sum, got[k].Sum)
		near("avg", k, want[k].Avg, got[k].Avg)
		near("last", k, want[k].Last, got[k].Last)
	}
}

func testSeriesBuckets(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	var in []domain.Record
	for i := range 60 {
		v := ptr(float64(i))
		if i == 17 {
			v = nil // a blank sample counts nowhere
		}
		in = append(in, rec(gpu, base.Add(time.Duration(i)*time.Second), "util", v))
	}
	in = append(in, rec(gpu, base.Add(20*time.Second), "power", ptr(1000)))
	write(t, s, in[30:])
	write(t, s, in[:30])
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	tests := []struct {
		name       string
		start, end time.Time
		step       time.Duration
		buckets    int
	}{
		{"inclusive end", at(5), at(34), 10 * time.Second, 3},
		{"end on a bucket start", at(5), at(35), 10 * time.Second, 4},
		{"single instant", at(7), at(7), time.Second, 1},
		{"empty buckets after the data", at(40), at(100), 10 * time.Second, 7},
		{"empty buckets before the data", base.Add(-time.Minute), at(3), 7 * time.Second, 10},
		{"one bucket", at(0), at(59), time.Hour, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.QuerySeries(ctxOf(t), ports.SeriesQuery{GPUUUID: gpu, MetricName: "util", Start: tc.start, End: tc.end, Step: tc.step})
			require.NoError(t, err)
			require.Equal(t, domain.SourceRaw, got.Source)
			require.Len(t, got.Buckets, tc.buckets)
			requireBuckets(t, bruteBuckets(in, "util", tc.start, tc.end, tc.step, false), got.Buckets)
		})
	}
}

func testSeriesRejects(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	write(t, s, series(gpu, 3, "util"))
	ok := ports.SeriesQuery{GPUUUID: gpu, MetricName: "util", Start: base, End: base.Add(time.Hour), Step: time.Minute}
	tests := []struct {
		name  string
		spoil func(q *ports.SeriesQuery)
		want  error
	}{
		{"zero step", func(q *ports.SeriesQuery) { q.Step = 0 }, ports.ErrInvalidArgument},
		{"end before start", func(q *ports.SeriesQuery) { q.End = q.Start.Add(-time.Second) }, ports.ErrInvalidArgument},
		{"too many buckets", func(q *ports.SeriesQuery) {
			q.End = q.Start.Add(ports.MaxSeriesBuckets * time.Second)
			q.Step = time.Second
		}, ports.ErrInvalidArgument},
		{"no metric", func(q *ports.SeriesQuery) { q.MetricName = "" }, ports.ErrInvalidArgument},
		{"unknown gpu", func(q *ports.SeriesQuery) { q.GPUUUID = gpuID() }, ports.ErrNotFound},
		{"unknown metric is empty buckets", func(q *ports.SeriesQuery) { q.MetricName = "nope" }, nil},
		{"the last allowed bucket count", func(q *ports.SeriesQuery) {
			q.End = q.Start.Add((ports.MaxSeriesBuckets - 1) * time.Second)
			q.Step = time.Second
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := ok
			tc.spoil(&q)
			_, err := s.QuerySeries(ctxOf(t), q)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
		})
	}
}

// testRollupsMatchRaw checks minute-aligned series (served from rollups,
// with raw samples for minutes not rolled up yet) against a brute-force
// aggregation of the raw samples, before and after maintenance rolled them
// up, and with late samples.
func testRollupsMatchRaw(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	rng := rand.New(rand.NewPCG(1, 2))
	var in []domain.Record
	for i := range 3 * 3600 / 7 {
		for _, m := range []string{"util", "temp"} {
			var v *float64
			if rng.IntN(20) > 0 {
				v = ptr(math.Round(rng.Float64()*10000) / 100)
			}
			in = append(in, rec(gpu, base.Add(time.Duration(i)*7*time.Second+time.Duration(rng.IntN(1000))*time.Millisecond), m, v))
		}
	}
	shuffled := slices.Clone(in)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for chunk := range slices.Chunk(shuffled, 500) {
		write(t, s, chunk)
	}
	start := base.Truncate(time.Hour)
	check := func(t *testing.T) {
		for _, tc := range []struct {
			end  time.Time
			step time.Duration
		}{
			{base.Add(3 * time.Hour), 5 * time.Minute},
			{base.Add(90 * time.Minute), time.Minute},
			{base.Add(2*time.Hour + 30*time.Second), 60 * time.Minute},
		} {
			for _, m := range []string{"util", "temp"} {
				got, err := s.QuerySeries(ctxOf(t), ports.SeriesQuery{GPUUUID: gpu, MetricName: m, Start: start, End: tc.end, Step: tc.step})
				require.NoError(t, err)
				require.Equal(t, domain.SourceRollup, got.Source)
				requireBuckets(t, bruteBuckets(in, m, start, tc.end, tc.step, true), got.Buckets)
			}
		}
	}
	t.Run("before maintenance", check)
	_, err := s.Maintain(ctxOf(t), base.Add(4*time.Hour))
	require.NoError(t, err)
	t.Run("after maintenance", check)
}

// bruteSummary is the fleet summary computed the slow way.
func bruteSummary(values map[string]float64, topN int) (count int, mn, avg, p50, p95, mx float64, top []string) {
	var vs []float64
	for _, v := range values {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	pct := func(p float64) float64 {
		// Linear interpolation between closest ranks, by hand.
		pos := p * float64(len(vs)-1)
		i := int(pos)
		if i+1 >= len(vs) {
			return vs[len(vs)-1]
		}
		return vs[i] + (vs[i+1]-vs[i])*(pos-float64(i))
	}
	sum := 0.0
	for _, v := range vs {
		sum += v
	}
	type kv struct {
		k string
		v float64
	}
	var kvs []kv
	for k, v := range values {
		kvs = append(kvs, kv{k, v})
	}
	slices.SortFunc(kvs, func(a, b kv) int { return cmp.Or(cmp.Compare(b.v, a.v), cmp.Compare(a.k, b.k)) })
	for _, e := range kvs[:min(topN, len(kvs))] {
		top = append(top, e.k)
	}
	return len(vs), vs[0], sum / float64(len(vs)), pct(0.5), pct(0.95), vs[len(vs)-1], top
}

func testFleetSummary(t *testing.T, newStore NewStore) {
	s := newStore(t)
	rng := rand.New(rand.NewPCG(3, 4))
	latest := map[string]float64{}
	var batch []domain.Record
	for i := range 37 {
		gpu := fmt.Sprintf("GPU-%03d", i)
		for k := range 5 {
			v := float64(rng.IntN(100))
			batch = append(batch, rec(gpu, base.Add(time.Duration(k)*time.Minute), "DCGM_FI_DEV_GPU_TEMP", ptr(v)))
			if k == 4 {
				latest[gpu] = v
			}
		}
		batch = append(batch, rec(gpu, base, "DCGM_FI_DEV_POWER_USAGE", ptr(1e6)))
	}
	// A GPU whose newest sample is blank is left out.
	batch = append(batch, rec("GPU-blank", base, "DCGM_FI_DEV_GPU_TEMP", ptr(1)), rec("GPU-blank", base.Add(time.Hour), "DCGM_FI_DEV_GPU_TEMP", nil))
	rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	write(t, s, batch[:100])
	write(t, s, batch[100:])

	got, err := s.FleetSummary(ctxOf(t), "DCGM_FI_DEV_GPU_TEMP", 5)
	require.NoError(t, err)
	count, mn, avg, p50, p95, mx, top := bruteSummary(latest, 5)
	require.Equal(t, count, got.Count)
	require.InDelta(t, mn, got.Min, 1e-9)
	require.InDelta(t, avg, got.Avg, 1e-9)
	require.InDelta(t, p50, got.P50, 1e-9)
	require.InDelta(t, p95, got.P95, 1e-9)
	require.InDelta(t, mx, got.Max, 1e-9)
	var gotTop []string
	for _, g := range got.Top {
		gotTop = append(gotTop, g.GPU.UUID)
		require.Equal(t, latest[g.GPU.UUID], g.Value)
		require.Equal(t, "host-a", g.GPU.Hostname)
		require.True(t, base.Add(4*time.Minute).Equal(g.Timestamp))
	}
	require.Equal(t, top, gotTop)

	empty, err := s.FleetSummary(ctxOf(t), "nope", 5)
	require.NoError(t, err)
	require.Zero(t, empty.Count)
	require.Empty(t, empty.Top)
}

// testAttributeHistory: a GPU that moves host keeps both attribute sets,
// each on the samples taken under it, and the registry follows the newest.
func testAttributeHistory(t *testing.T, newStore NewStore) {
	s := newStore(t)
	gpu := gpuID()
	before := rec(gpu, base, "util", ptr(1))
	after := rec(gpu, base.Add(time.Minute), "util", ptr(2))
	after.Hostname, after.LabelsRaw = "host-b", `Hostname="host-b"`
	write(t, s, []domain.Record{after})
	write(t, s, []domain.Record{before})
	rows, _ := all(t, s, ports.TelemetryQuery{GPUUUID: gpu, Limit: 10})
	require.Len(t, rows, 2)
	require.Equal(t, "host-a", rows[0].Hostname)
	require.Equal(t, "host-b", rows[1].Hostname)
	require.Equal(t, `Hostname="host-b"`, rows[1].LabelsRaw)
	require.NotEqual(t, rows[0].ID, rows[1].ID, "a new attribute set is a new series")
	gpus, err := s.ListGPUs(ctxOf(t))
	require.NoError(t, err)
	require.Equal(t, "host-b", gpus[0].Hostname)
	metrics, err := s.ListMetrics(ctxOf(t))
	require.NoError(t, err)
	require.Equal(t, []domain.MetricSeen{{Name: "util", GPUs: 1}}, metrics)
	got, err := s.QuerySeries(ctxOf(t), ports.SeriesQuery{GPUUUID: gpu, MetricName: "util", Start: base, End: base.Add(time.Minute), Step: time.Hour})
	require.NoError(t, err)
	require.Equal(t, 2, got.Buckets[0].Count, "a series query spans attribute sets")
}

// testPartitionBoundaries writes samples at, just before and just after
// UTC midnight (a day partition boundary), late samples into an old day
// after newer days exist, and a sample on a day far from the others.
func testPartitionBoundaries(t *testing.T, newStore NewStoreWith) {
	s := newStore(t, Options{})
	gpu := gpuID()
	midnight := time.Date(2025, 7, 19, 0, 0, 0, 0, time.UTC)
	in := []domain.Record{
		rec(gpu, midnight, "util", ptr(1)),
		rec(gpu, midnight.Add(-time.Microsecond), "util", ptr(2)),
		rec(gpu, midnight.Add(time.Microsecond), "util", ptr(3)),
		rec(gpu, midnight.Add(26*time.Hour), "util", ptr(4)),
	}
	require.Equal(t, ports.WriteResult{Inserted: 4}, write(t, s, in))
	late := []domain.Record{rec(gpu, midnight.Add(-20*time.Hour), "util", ptr(5)), rec(gpu, midnight.Add(-400*24*time.Hour), "util", ptr(6))}
	require.Equal(t, ports.WriteResult{Inserted: 2}, write(t, s, late))
	require.Equal(t, ports.WriteResult{Duplicates: 6}, write(t, s, redelivered(append(slices.Clone(in), late...))))

	rows, _ := all(t, s, ports.TelemetryQuery{GPUUUID: gpu, Limit: 4})
	requireOrdered(t, rows)
	require.Len(t, rows, 6)
	page, err := s.QueryTelemetry(ctxOf(t), ports.TelemetryQuery{GPUUUID: gpu, Start: midnight, End: midnight, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, []string{sampleKey(in[0])}, msgIDs(page.Records), "a sample exactly at the boundary is found once")
	page, err = s.QueryTelemetry(ctxOf(t), ports.TelemetryQuery{GPUUUID: gpu, Start: midnight.Add(-time.Microsecond), End: midnight.Add(time.Microsecond), Limit: 10})
	require.NoError(t, err)
	require.Equal(t, []string{sampleKey(in[1]), sampleKey(in[0]), sampleKey(in[2])}, msgIDs(page.Records))
}

// testRetentionOnWrite: a sample older than the raw retention is dropped
// and counted as Expired, never stored; the rest of its batch is stored.
func testRetentionOnWrite(t *testing.T, newStore NewStoreWith) {
	now := base.Add(10 * 24 * time.Hour)
	s := newStore(t, Options{Retention: 48 * time.Hour, Now: func() time.Time { return now }})
	gpu := gpuID()
	fresh, stale := rec(gpu, now.Add(-time.Hour), "util", ptr(1)), rec(gpu, now.Add(-72*time.Hour), "util", ptr(2))
	require.Equal(t, ports.WriteResult{Inserted: 1, Expired: 1}, write(t, s, []domain.Record{stale, fresh}))
	require.Equal(t, ports.WriteResult{Expired: 1}, write(t, s, []domain.Record{stale}))
	rows, _ := all(t, s, ports.TelemetryQuery{GPUUUID: gpu, Limit: 10})
	require.Equal(t, []string{sampleKey(fresh)}, msgIDs(rows))
}

// testRetentionByMaintain drives retention with an injected clock: raw days
// older than the retention disappear, newer stay, rollups outlive raw
// samples and still answer a window over the dropped days.
func testRetentionByMaintain(t *testing.T, newStore NewStoreWith) {
	var clock atomic.Pointer[time.Time]
	day0 := time.Date(2025, 7, 14, 0, 0, 0, 0, time.UTC)
	clock.Store(&day0)
	s := newStore(t, Options{Retention: 48 * time.Hour, RollupRetention: 30 * 24 * time.Hour, Now: func() time.Time { return *clock.Load() }})
	gpu := gpuID()
	var in []domain.Record
	for d := range 5 {
		var batch []domain.Record
		for h := range 24 {
			batch = append(batch, rec(gpu, day0.Add(time.Duration(d*24+h)*time.Hour+30*time.Second), "util", ptr(float64(d*100+h))))
		}
		now := day0.Add(time.Duration(d*24+23) * time.Hour)
		clock.Store(&now)
		require.Equal(t, ports.WriteResult{Inserted: 24}, write(t, s, batch))
		in = append(in, batch...)
	}
	now := day0.Add(4*24*time.Hour + 12*time.Hour) // day 4, noon
	clock.Store(&now)
	rep, err := s.Maintain(ctxOf(t), now)
	require.NoError(t, err)
	require.True(t, rep.Ran)
	require.Positive(t, rep.PartitionsDropped)

	// Raw: days 0 and 1 ended more than 48 h ago and are gone; day 2 stays.
	rows, _ := all(t, s, ports.TelemetryQuery{GPUUUID: gpu, Limit: 1000})
	require.Len(t, rows, 3*24)
	require.True(t, day0.Add(2*24*time.Hour+30*time.Second).Equal(rows[0].Timestamp))

	// Rollups: the whole window, dropped raw days included, at 1 h steps.
	end := day0.Add(5*24*time.Hour - time.Minute)
	got, err := s.QuerySeries(ctxOf(t), ports.SeriesQuery{GPUUUID: gpu, MetricName: "util", Start: day0, End: end, Step: time.Hour})
	require.NoError(t, err)
	require.Equal(t, domain.SourceRollup, got.Source)
	requireBuckets(t, bruteBuckets(in, "util", day0, end, time.Hour, true), got.Buckets)

	// A second run finds nothing more to drop; later, the rollups expire too.
	rep, err = s.Maintain(ctxOf(t), now)
	require.NoError(t, err)
	require.Zero(t, rep.PartitionsDropped)
	later := now.Add(40 * 24 * time.Hour)
	_, err = s.Maintain(ctxOf(t), later)
	require.NoError(t, err)
	got, err = s.QuerySeries(ctxOf(t), ports.SeriesQuery{GPUUUID: gpu, MetricName: "util", Start: day0, End: end, Step: 24 * time.Hour})
	require.NoError(t, err)
	for _, b := range got.Buckets {
		require.Zero(t, b.Count, "rollups past their retention are gone")
	}
}
