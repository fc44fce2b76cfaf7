package main

import (
	"fmt"
	"math"
	"slices"
)

// summary is a measurement repeated over runs.
type summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// summarize returns the median, min and max of xs (the median of an even
// count is the mean of the middle two); zero for no values.
func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return summary{Median: med, Min: s[0], Max: s[n-1], N: n}
}

// ratio is a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// pace chooses how many streamers, each emitting one message every
// intervalMS milliseconds (STREAMER_INTERVAL_MS is whole milliseconds), come
// closest to target messages/s with at most maxStreamers. Among equally
// close choices it takes the longest interval: a 1 ms ticker on a loaded
// machine drops ticks. It returns the rate the choice offers.
func pace(target float64, maxStreamers int) (streamers, intervalMS int, rate float64) {
	if target <= 0 || maxStreamers < 1 {
		return 0, 0, 0
	}
	type choice struct {
		n, iv int
		rate  float64
		err   float64
	}
	var choices []choice
	best := math.Inf(1)
	for n := 1; n <= maxStreamers; n++ {
		ideal := float64(n) * 1000 / target
		for _, iv := range []int{max(1, int(math.Floor(ideal))), max(1, int(math.Ceil(ideal)))} {
			r := float64(n) * 1000 / float64(iv)
			c := choice{n: n, iv: iv, rate: r, err: math.Abs(r-target) / target}
			choices = append(choices, c)
			best = min(best, c.err)
		}
	}
	var pick choice
	for _, c := range choices {
		// Within 0.1% of the best counts as a tie: float rounding only.
		if c.err <= best+0.001 && (pick.n == 0 || c.iv > pick.iv) {
			pick = c
		}
	}
	return pick.n, pick.iv, pick.rate
}

// fmtRate prints messages/s compactly.
func fmtRate(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// fmtSummary prints "median [min–max]" with f.
func fmtSummary(s summary, f func(float64) string) string {
	if s.N == 0 {
		return "-"
	}
	if s.N == 1 {
		return f(s.Median)
	}
	return fmt.Sprintf("%s [%s–%s]", f(s.Median), f(s.Min), f(s.Max))
}

// fmtSeconds prints a latency in ms or s.
func fmtSeconds(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.0fms", v*1000)
	}
	return fmt.Sprintf("%.2fs", v)
}

func fmtCPU(v float64) string { return fmt.Sprintf("%.3f", v) }
