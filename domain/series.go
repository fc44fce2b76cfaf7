package domain

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// RollupStep is the resolution of the stored rollups.
const RollupStep = time.Minute

// MetricSeen is a metric name the store has seen, with how many GPUs
// reported it.
type MetricSeen struct {
	Name string
	GPUs int
}

// LatestValue is a GPU's newest sample of one metric.
type LatestValue struct {
	MetricName string
	Timestamp  time.Time
	Value      *float64
}

// Bucket aggregates the non-null samples of one step of a series. Min, Max,
// Avg and Last are nil when Count is 0.
type Bucket struct {
	Start              time.Time
	Count              int
	Min, Max, Avg, Sum *float64
	Last               *float64
}

// Series is a bucketed metric of one GPU. Source says where the buckets
// came from: "rollup" (1-minute rollups, with raw samples for the minutes
// not rolled up yet) or "raw".
type Series struct {
	Buckets []Bucket
	Source  string
}

// Series sources.
const (
	SourceRollup = "rollup"
	SourceRaw    = "raw"
)

// UsesRollups reports whether a series with this start and step can be
// answered from 1-minute rollups: the step is a whole number of minutes and
// the window starts on a minute.
func UsesRollups(start time.Time, step time.Duration) bool {
	return step >= RollupStep && step%RollupStep == 0 && start.Equal(start.Truncate(RollupStep))
}

// BucketCount is how many buckets of step cover [start, end] (the last one
// starts at or before end).
func BucketCount(start, end time.Time, step time.Duration) int64 {
	if step <= 0 || end.Before(start) {
		return 0
	}
	return int64(end.Sub(start)/step) + 1
}

// Agg accumulates min/max/sum/count/last; the zero value is empty.
type Agg struct {
	Count         int
	Min, Max, Sum float64
	Last          float64
	LastAt        time.Time
}

// Add folds one value observed at t into a.
func (a *Agg) Add(v float64, t time.Time) {
	a.Merge(Agg{Count: 1, Min: v, Max: v, Sum: v, Last: v, LastAt: t})
}

// Merge folds b into a; Last follows the later LastAt (b on a tie).
func (a *Agg) Merge(b Agg) {
	if b.Count == 0 {
		return
	}
	if a.Count == 0 {
		*a = b
		return
	}
	a.Count += b.Count
	a.Min, a.Max, a.Sum = math.Min(a.Min, b.Min), math.Max(a.Max, b.Max), a.Sum+b.Sum
	if !b.LastAt.Before(a.LastAt) {
		a.Last, a.LastAt = b.Last, b.LastAt
	}
}

// Bucket turns a into a Bucket starting at start.
func (a Agg) Bucket(start time.Time) Bucket {
	b := Bucket{Start: start, Count: a.Count}
	if a.Count > 0 {
		mn, mx, sum, avg, last := a.Min, a.Max, a.Sum, a.Sum/float64(a.Count), a.Last
		b.Min, b.Max, b.Sum, b.Avg, b.Last = &mn, &mx, &sum, &avg, &last
	}
	return b
}

// GPUValue is one GPU's latest value of a metric.
type GPUValue struct {
	GPU       GPU
	Timestamp time.Time
	Value     float64
}

// FleetSummary describes one metric across the fleet.
type FleetSummary struct {
	MetricName              string
	Count                   int
	Min, Avg, P50, P95, Max float64
	Top                     []GPUValue
}

// Percentile is the p-th percentile (0..100) of sorted values by linear
// interpolation between closest ranks (PostgreSQL's percentile_cont).
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(rank-float64(lo))
}

// SummarizeFleet computes count, min, avg, p50, p95, max of values and the
// topN highest (ties: by GPU UUID). Both stores use it, so the numbers do
// not depend on the backend.
func SummarizeFleet(metric string, values []GPUValue, topN int) FleetSummary {
	out := FleetSummary{MetricName: metric, Count: len(values), Top: []GPUValue{}}
	if len(values) == 0 {
		return out
	}
	sorted := make([]float64, len(values))
	sum := 0.0
	for i, v := range values {
		sorted[i] = v.Value
		sum += v.Value
	}
	slices.Sort(sorted)
	out.Min, out.Max, out.Avg = sorted[0], sorted[len(sorted)-1], sum/float64(len(sorted))
	out.P50, out.P95 = Percentile(sorted, 50), Percentile(sorted, 95)
	top := slices.Clone(values)
	slices.SortFunc(top, func(a, b GPUValue) int {
		return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(a.GPU.UUID, b.GPU.UUID))
	})
	out.Top = top[:min(max(topN, 0), len(top))]
	return out
}
