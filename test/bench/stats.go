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

// pace spreads target messages/s over the run's streamers (STREAMER_RATE,
// whole messages/s each, a sub-millisecond gap when needed): the latency
// run uses as many streamers as the run whose rate it halves, so the offered
// load differs only in its rate. It returns the streamers, each one's rate
// and the rate they offer together.
func pace(target float64, streamers int) (n, rate int, offered float64) {
	if target <= 0 || streamers < 1 {
		return 0, 0, 0
	}
	rate = max(1, int(math.Round(target/float64(streamers))))
	return streamers, rate, float64(streamers * rate)
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
