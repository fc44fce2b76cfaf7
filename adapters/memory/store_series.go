package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

const day = 24 * time.Hour

func compareRecords(a, b domain.Record) int {
	return cmp.Or(a.Timestamp.Compare(b.Timestamp), cmp.Compare(a.ID, b.ID))
}

func compareGPUs(a, b domain.GPU) int {
	return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.GPUIndex, b.GPUIndex), cmp.Compare(a.UUID, b.UUID))
}

// QueryGPUs returns one filtered page of the registry.
func (s *TelemetryStore) QueryGPUs(ctx context.Context, q ports.GPUQuery) (ports.GPUPage, error) {
	if q.Limit < 1 {
		return ports.GPUPage{}, fmt.Errorf("query gpus: limit %d is below 1: %w", q.Limit, ports.ErrInvalidArgument)
	}
	all, err := s.ListGPUs(ctx)
	if err != nil {
		return ports.GPUPage{}, fmt.Errorf("query gpus: %w", err)
	}
	page := ports.GPUPage{GPUs: []domain.GPU{}}
	for _, g := range all {
		if (q.Hostname != "" && g.Hostname != q.Hostname) || (q.ModelName != "" && g.ModelName != q.ModelName) {
			continue
		}
		if a := q.After; a != nil && compareGPUs(g, domain.GPU{Hostname: a.Hostname, GPUIndex: a.GPUIndex, UUID: a.UUID}) <= 0 {
			continue
		}
		if len(page.GPUs) == q.Limit {
			last := page.GPUs[q.Limit-1]
			page.Next = &ports.GPUCursor{Hostname: last.Hostname, GPUIndex: last.GPUIndex, UUID: last.UUID}
			break
		}
		page.GPUs = append(page.GPUs, g)
	}
	return page, nil
}

// ListMetrics returns the metric names seen with their GPU counts.
func (s *TelemetryStore) ListMetrics(ctx context.Context) ([]domain.MetricSeen, error) {
	out, err := call(ctx, s, func(st *storeState) []domain.MetricSeen {
		gpus := map[string]map[string]struct{}{}
		for k := range st.series {
			if gpus[k.metric] == nil {
				gpus[k.metric] = map[string]struct{}{}
			}
			gpus[k.metric][k.gpu] = struct{}{}
		}
		out := make([]domain.MetricSeen, 0, len(gpus))
		for name, set := range gpus {
			out = append(out, domain.MetricSeen{Name: name, GPUs: len(set)})
		}
		return out
	})
	if err != nil {
		return nil, fmt.Errorf("list metrics: %w", err)
	}
	slices.SortFunc(out, func(a, b domain.MetricSeen) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// newest is the series' newest sample; ok is false when there is none.
func (ser *memSeries) newest() (memSample, bool) {
	if len(ser.samples) == 0 {
		return memSample{}, false
	}
	return ser.samples[len(ser.samples)-1], true
}

// newer reports whether sample a of series ida beats b of idb (later
// timestamp, then higher series id), as the PostgreSQL store orders them.
func newer(a memSample, ida int64, b memSample, idb int64) bool {
	return cmp.Or(a.ts.Compare(b.ts), cmp.Compare(ida, idb)) > 0
}

// LatestValues returns the newest sample of each metric of a GPU.
func (s *TelemetryStore) LatestValues(ctx context.Context, gpuUUID string) ([]domain.LatestValue, error) {
	type res struct {
		out   []domain.LatestValue
		found bool
	}
	r, err := call(ctx, s, func(st *storeState) res {
		if _, ok := st.gpus[gpuUUID]; !ok {
			return res{}
		}
		type best struct {
			m  memSample
			id int64
		}
		by := map[string]best{}
		for _, ser := range st.byGPU[gpuUUID] {
			m, ok := ser.newest()
			if !ok {
				continue
			}
			if b, ok := by[ser.attrs.MetricName]; !ok || newer(m, ser.id, b.m, b.id) {
				by[ser.attrs.MetricName] = best{m, ser.id}
			}
		}
		out := make([]domain.LatestValue, 0, len(by))
		for name, b := range by {
			v := domain.LatestValue{MetricName: name, Timestamp: b.m.ts}
			if b.m.value != nil {
				x := *b.m.value
				v.Value = &x
			}
			out = append(out, v)
		}
		return res{out: out, found: true}
	})
	if err != nil {
		return nil, fmt.Errorf("latest values: %w", err)
	}
	if !r.found {
		return nil, fmt.Errorf("latest values: gpu %s: %w", gpuUUID, ports.ErrNotFound)
	}
	slices.SortFunc(r.out, func(a, b domain.LatestValue) int { return cmp.Compare(a.MetricName, b.MetricName) })
	return r.out, nil
}

// FleetSummary summarises a metric over every GPU's latest non-null value.
func (s *TelemetryStore) FleetSummary(ctx context.Context, metricName string, topN int) (domain.FleetSummary, error) {
	values, err := call(ctx, s, func(st *storeState) []domain.GPUValue {
		type best struct {
			m  memSample
			id int64
		}
		by := map[string]best{}
		for k, ser := range st.series {
			if k.metric != metricName {
				continue
			}
			m, ok := ser.newest()
			if !ok {
				continue
			}
			if b, ok := by[k.gpu]; !ok || newer(m, ser.id, b.m, b.id) {
				by[k.gpu] = best{m, ser.id}
			}
		}
		out := make([]domain.GPUValue, 0, len(by))
		for gpu, b := range by {
			if b.m.value == nil {
				continue // a blank latest sample says nothing about now
			}
			out = append(out, domain.GPUValue{GPU: st.gpus[gpu], Timestamp: b.m.ts, Value: *b.m.value})
		}
		return out
	})
	if err != nil {
		return domain.FleetSummary{}, fmt.Errorf("fleet summary: %w", err)
	}
	return domain.SummarizeFleet(metricName, values, topN), nil
}

// QuerySeries buckets one metric of a GPU, from the rollups when the step
// allows, from raw samples otherwise.
func (s *TelemetryStore) QuerySeries(ctx context.Context, q ports.SeriesQuery) (domain.Series, error) {
	if err := q.Validate(); err != nil {
		return domain.Series{}, fmt.Errorf("query series: %w", err)
	}
	start, end := normTime(q.Start), normTime(q.End)
	n := domain.BucketCount(start, end, q.Step)
	rollups := domain.UsesRollups(start, q.Step)
	type res struct {
		aggs  map[int64]domain.Agg
		found bool
	}
	r, err := call(ctx, s, func(st *storeState) res {
		if _, ok := st.gpus[q.GPUUUID]; !ok {
			return res{}
		}
		aggs := map[int64]domain.Agg{}
		for _, ser := range st.byGPU[q.GPUUUID] {
			if ser.attrs.MetricName != q.MetricName {
				continue
			}
			if rollups {
				last := end.Truncate(domain.RollupStep)
				for minute, a := range ser.rollups {
					t := time.Unix(minute, 0).UTC()
					if t.Before(start) || t.After(last) {
						continue
					}
					k := int64(t.Sub(start) / q.Step)
					b := aggs[k]
					b.Merge(a)
					aggs[k] = b
				}
				continue
			}
			for _, m := range ser.samples {
				if m.value == nil || m.ts.Before(start) || m.ts.After(end) {
					continue
				}
				k := int64(m.ts.Sub(start) / q.Step)
				b := aggs[k]
				b.Add(*m.value, m.ts)
				aggs[k] = b
			}
		}
		return res{aggs: aggs, found: true}
	})
	if err != nil {
		return domain.Series{}, fmt.Errorf("query series: %w", err)
	}
	if !r.found {
		return domain.Series{}, fmt.Errorf("query series: gpu %s: %w", q.GPUUUID, ports.ErrNotFound)
	}
	out := domain.Series{Source: domain.SourceRaw, Buckets: make([]domain.Bucket, n)}
	if rollups {
		out.Source = domain.SourceRollup
	}
	for k := range n {
		out.Buckets[k] = r.aggs[k].Bucket(start.Add(time.Duration(k) * q.Step))
	}
	return out, nil
}

// Maintain drops what is past retention, by whole UTC days as the
// PostgreSQL store drops day partitions: samples of a day whose end is
// before now - Retention, rollups likewise with RollupRetention. Rollups
// are kept current by writes, so RolledUpTo is now's minute.
func (s *TelemetryStore) Maintain(ctx context.Context, now time.Time) (ports.MaintenanceReport, error) {
	floorDay := func(keep time.Duration) time.Time {
		if keep <= 0 {
			return time.Time{}
		}
		return now.Add(-keep).UTC().Truncate(day)
	}
	rawCut, rollCut := floorDay(s.opts.Retention), floorDay(s.opts.RollupRetention)
	dropped, err := call(ctx, s, func(st *storeState) int {
		days := map[time.Time]struct{}{}
		for _, ser := range st.series {
			i := sort.Search(len(ser.samples), func(i int) bool { return !ser.samples[i].ts.Before(rawCut) })
			for _, m := range ser.samples[:i] {
				days[m.ts.Truncate(day)] = struct{}{}
			}
			ser.samples = slices.Delete(ser.samples, 0, i)
			for minute := range ser.rollups {
				if t := time.Unix(minute, 0).UTC(); t.Before(rollCut) {
					days[t.Truncate(day).Add(time.Nanosecond)] = struct{}{} // a rollup day counts apart from a raw day
					delete(ser.rollups, minute)
				}
			}
		}
		return len(days)
	})
	if err != nil {
		return ports.MaintenanceReport{}, fmt.Errorf("maintain: %w", err)
	}
	return ports.MaintenanceReport{Ran: true, PartitionsDropped: dropped, RolledUpTo: now.UTC().Truncate(time.Minute)}, nil
}
