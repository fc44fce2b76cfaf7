package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Histograms read from the apps: the two latencies of issue 16.
const (
	// histStampToPersisted is the collector's sample age at commit: from
	// the streamer's stamp (taken when it sends the row) to the commit.
	histStampToPersisted = "collector_sample_age_seconds"
	// histPublishToAck is the streamer's publish → acknowledged time.
	histPublishToAck = "streamer_publish_duration_seconds"
)

// stageHistograms are the steps between the two latencies, read from
// every app that has them, for the "where the time goes" breakdown of a
// run (pipelineResult.Stages): the writer's group commit, the reader's
// refill and ack DELETE, and the collector's store write plus ack.
var stageHistograms = []string{
	"mqwriter_flush_duration_seconds",
	"mqreader_refill_duration_seconds",
	"mqreader_delete_duration_seconds",
	"collector_batch_duration_seconds",
}

// scrapedHistograms is every histogram a snapshot reads from each app.
var scrapedHistograms = append([]string{histStampToPersisted, histPublishToAck}, stageHistograms...)

// histogram is a Prometheus histogram's cumulative counts by upper bound
// (le), summed over processes.
type histogram map[float64]float64

// parseHistograms reads the buckets of the named histograms from Prometheus
// text; every series of a name is added up.
func parseHistograms(r io.Reader, names ...string) (map[string]histogram, error) {
	out := map[string]histogram{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, n := range names {
			rest, ok := strings.CutPrefix(line, n+"_bucket{")
			if !ok {
				continue
			}
			i := strings.Index(rest, `le="`)
			if i < 0 {
				return nil, fmt.Errorf("parse histogram: no le in %q", line)
			}
			leStr, tail, ok := strings.Cut(rest[i+4:], `"`)
			if !ok {
				return nil, fmt.Errorf("parse histogram: unterminated le in %q", line)
			}
			le, err := strconv.ParseFloat(leStr, 64) // "+Inf" parses as +Inf
			if err != nil {
				return nil, fmt.Errorf("parse histogram: le of %q: %w", line, err)
			}
			fields := strings.Fields(tail[strings.Index(tail, "}")+1:])
			if len(fields) == 0 {
				return nil, fmt.Errorf("parse histogram: no value in %q", line)
			}
			v, err := strconv.ParseFloat(fields[0], 64)
			if err != nil {
				return nil, fmt.Errorf("parse histogram: value of %q: %w", line, err)
			}
			if out[n] == nil {
				out[n] = histogram{}
			}
			out[n][le] += v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse histogram: %w", err)
	}
	return out, nil
}

// scrapeHistograms fetches baseURL/metrics and reads the named histograms.
func scrapeHistograms(ctx context.Context, baseURL string, names ...string) (map[string]histogram, error) {
	return scrapeWith(ctx, baseURL, func(r io.Reader) (map[string]histogram, error) { return parseHistograms(r, names...) })
}

func (h histogram) add(o histogram) histogram {
	if h == nil {
		h = histogram{}
	}
	for le, v := range o {
		h[le] += v
	}
	return h
}

// minus is the histogram of what was observed between o and h.
func (h histogram) minus(o histogram) histogram {
	d := histogram{}
	for le, v := range h {
		d[le] = v - o[le]
	}
	return d
}

// count is the number of observations (the +Inf bucket); 0 when empty.
func (h histogram) count() float64 { return h[math.Inf(1)] }

// quantile estimates the q-quantile, interpolating linearly inside the
// bucket it falls in (as PromQL's histogram_quantile does); 0 when empty.
// A quantile in the +Inf bucket is reported as the largest finite bound.
func (h histogram) quantile(q float64) float64 {
	bounds := slices.Sorted(maps.Keys(h))
	if len(bounds) == 0 {
		return 0
	}
	total := h[bounds[len(bounds)-1]]
	if total <= 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		count := h[le]
		if count >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			if count == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(count-below)
		}
		lower, below = le, count
	}
	return lower
}
