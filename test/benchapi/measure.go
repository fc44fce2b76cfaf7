package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/ports"
)

// Names of the measured request kinds, in report order.
const (
	epGPUs      = "GET /api/v1/gpus"
	epPage      = "GET telemetry window, first page"
	epNextPage  = "GET telemetry window, next page (cursor)"
	epPageGzip  = "GET telemetry window, first page, gzip"
	epStore     = "store.QueryTelemetry first page (no HTTP)"
	epStreamAll = "GET telemetry NDJSON, whole window"
	epLatest    = "GET /api/v1/gpus/{id}/latest"
	epSeries    = "GET series, 24 h at 1 m step"
	epFleet     = "GET /api/v1/fleet/summary"
)

// measureConfig is what to measure.
type measureConfig struct {
	requests       int           // per endpoint
	warmup         int           // unrecorded rounds before measuring
	follow         int           // next_cursor pages followed per first page
	streamRequests int           // NDJSON streams of a whole window
	concurrency    int           // clients sending at once
	limit          int           // page size; 0 leaves the API's default
	window         time.Duration // query window
	seed           uint64
	targetGPUs     time.Duration // p99 target of /gpus
	targetPage     time.Duration // p99 target of a page
	targetLatest   time.Duration // p99 target of /latest
	targetSeries   time.Duration // p99 target of a 24 h series at 1 m step
	targetFleet    time.Duration // p99 target of /fleet/summary
	checkEvery     int           // decode and check every entry of every n-th page
}

// series is one request kind's measurements.
type series struct {
	samples []time.Duration
	bytes   int64
	entries int64
}

// worker is one client: it owns its random source, buffer and series, so
// clients share nothing while they run; the series are merged afterwards.
type worker struct {
	rng       *rand.Rand
	buf       bytes.Buffer
	series    map[string]*series
	recording bool // false during warm-up rounds
	checked   int  // pages checked, to pick which to decode
}

func (w *worker) record(name string, d time.Duration, size, entries int64) {
	if !w.recording {
		return
	}
	s := w.series[name]
	if s == nil {
		s = &series{}
		w.series[name] = s
	}
	s.samples = append(s.samples, d)
	s.bytes += size
	s.entries += entries
}

// bench drives the API on a loopback listener and the store directly.
type bench struct {
	cfg    measureConfig
	d      *dataset
	base   string // http://127.0.0.1:port
	client *http.Client
	store  ports.TelemetryReader
	limit  int64              // the page size in effect
	span   int64              // window length in seconds
	merged map[string]*series // owned by measure's goroutine
}

// measure runs the rounds, then the streams, and returns the series by name.
func measure(ctx context.Context, cfg measureConfig, d *dataset, base string, store ports.TelemetryReader) (map[string]*series, error) {
	b := &bench{
		cfg: cfg, d: d, base: base, store: store, merged: map[string]*series{},
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			// Identity unless a phase asks for gzip, as curl does; with
			// compression on, Go would decompress inside the timing.
			DisableCompression:  true,
			MaxIdleConns:        2 * cfg.concurrency,
			MaxIdleConnsPerHost: 2 * cfg.concurrency,
		}},
		limit: int64(cfg.limit),
		span:  int64(cfg.window / time.Second),
	}
	if b.limit == 0 {
		b.limit = httpapi.DefaultLimit
	}
	defer b.client.CloseIdleConnections()
	// Every round sends one request of each kind, so that on a shared
	// machine all kinds see the same background load; the long NDJSON
	// streams run afterwards.
	round := func(ctx context.Context, w *worker, i int) error {
		for _, fn := range []func(context.Context, *worker, int) error{b.listGPUs, b.pages, b.pageGzip, b.storePage, b.latest, b.series24h, b.fleet} {
			if err := fn(ctx, w, i); err != nil {
				return err
			}
		}
		return nil
	}
	if err := b.run(ctx, cfg.requests, cfg.warmup, 1, round); err != nil {
		return nil, err
	}
	if cfg.streamRequests > 0 {
		if err := b.run(ctx, cfg.streamRequests, min(cfg.warmup, 1), 2, b.stream); err != nil {
			return nil, err
		}
	}
	return b.merged, nil
}

// run calls fn for rounds -warmup..n-1 on cfg.concurrency workers, where
// a negative round is a warm-up and is not recorded, then merges the
// workers' series into b.merged.
func (b *bench) run(ctx context.Context, n, warmup int, stream uint64, fn func(context.Context, *worker, int) error) error {
	workers := make([]*worker, max(b.cfg.concurrency, 1))
	g, gctx := errgroup.WithContext(ctx)
	for k := range workers {
		w := &worker{rng: rand.New(rand.NewPCG(b.cfg.seed, stream<<32|uint64(k))), series: map[string]*series{}}
		workers[k] = w
		g.Go(func() error {
			for i := k - warmup; i < n; i += len(workers) {
				w.recording = i >= 0
				if err := fn(gctx, w, i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, w := range workers {
		for name, s := range w.series {
			m := b.merged[name]
			if m == nil {
				m = &series{}
				b.merged[name] = m
			}
			m.samples = append(m.samples, s.samples...)
			m.bytes += s.bytes
			m.entries += s.entries
		}
	}
	return nil
}

// get sends one request and reads the whole body into w.buf; the time is
// from sending the request to the body's last byte.
func (b *bench) get(ctx context.Context, w *worker, target string, hdr http.Header) (time.Duration, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	w.buf.Reset()
	start := time.Now()
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: %w", target, err)
	}
	_, err = w.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: read body: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("GET %s: status %d: %.300s", target, resp.StatusCode, w.buf.String())
	}
	return elapsed, resp.Header, nil
}

func (b *bench) listGPUs(ctx context.Context, w *worker, _ int) error {
	elapsed, _, err := b.get(ctx, w, b.base+"/api/v1/gpus", nil)
	if err != nil {
		return err
	}
	size := int64(w.buf.Len())
	var list httpapi.GPUList
	if err := json.Unmarshal(w.buf.Bytes(), &list); err != nil {
		return fmt.Errorf("gpus: decode: %w", err)
	}
	if len(list.GPUs) != len(b.d.gpus) {
		return fmt.Errorf("gpus: got %d GPUs, want %d", len(list.GPUs), len(b.d.gpus))
	}
	w.record(epGPUs, elapsed, size, int64(len(list.GPUs)))
	return nil
}

// getJSON fetches target into w.buf and decodes it into v.
func (b *bench) getJSON(ctx context.Context, w *worker, target string, v any) (time.Duration, error) {
	elapsed, _, err := b.get(ctx, w, target, nil)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(w.buf.Bytes(), v); err != nil {
		return 0, fmt.Errorf("%s: decode: %w", target, err)
	}
	return elapsed, nil
}

// latest asks a random GPU's latest values: one per metric.
func (b *bench) latest(ctx context.Context, w *worker, _ int) error {
	t := b.d.gpus[w.rng.IntN(len(b.d.gpus))]
	var got httpapi.LatestValues
	elapsed, err := b.getJSON(ctx, w, b.base+"/api/v1/gpus/"+url.PathEscape(t.gpu.UUID)+"/latest", &got)
	if err != nil {
		return err
	}
	if len(got.Metrics) != len(t.samples) {
		return fmt.Errorf("latest of %s: %d metrics, want %d", t.gpu.UUID, len(got.Metrics), len(t.samples))
	}
	w.record(epLatest, elapsed, int64(w.buf.Len()), int64(len(got.Metrics)))
	return nil
}

// series24h asks a random GPU's random metric over the 24 h before the
// newest sample at 1 m step (1,440 buckets, from rollups).
func (b *bench) series24h(ctx context.Context, w *worker, _ int) error {
	t := b.d.gpus[w.rng.IntN(len(b.d.gpus))]
	metric := t.samples[w.rng.IntN(len(t.samples))].MetricName
	end := b.d.newest().Truncate(time.Minute)
	v := url.Values{"metric_name": {metric}, "start_time": {end.Add(-24 * time.Hour).Format(time.RFC3339)},
		"end_time": {end.Format(time.RFC3339)}, "step": {"1m"}}
	var got httpapi.Series
	elapsed, err := b.getJSON(ctx, w, b.base+"/api/v1/gpus/"+url.PathEscape(t.gpu.UUID)+"/series?"+v.Encode(), &got)
	if err != nil {
		return err
	}
	if len(got.Buckets) != 24*60+1 || got.Source != "rollup" {
		return fmt.Errorf("series of %s: %d buckets from %s, want 1441 from rollup", t.gpu.UUID, len(got.Buckets), got.Source)
	}
	w.record(epSeries, elapsed, int64(w.buf.Len()), int64(len(got.Buckets)))
	return nil
}

// fleet summarises a random metric over the fleet.
func (b *bench) fleet(ctx context.Context, w *worker, _ int) error {
	t := b.d.gpus[w.rng.IntN(len(b.d.gpus))]
	metric := t.samples[w.rng.IntN(len(t.samples))].MetricName
	var got httpapi.FleetSummary
	elapsed, err := b.getJSON(ctx, w, b.base+"/api/v1/fleet/summary?metric_name="+url.QueryEscape(metric), &got)
	if err != nil {
		return err
	}
	if got.Count == 0 {
		return fmt.Errorf("fleet summary of %s: no GPU", metric)
	}
	w.record(epFleet, elapsed, int64(w.buf.Len()), int64(got.Count))
	return nil
}

// randomWindow picks a GPU and a window of b.span seconds uniformly.
func (b *bench) randomWindow(w *worker) window {
	gi := w.rng.IntN(len(b.d.gpus))
	first := w.rng.Int64N(b.d.maxWindowStart(b.span) + 1)
	return b.d.windowFor(gi, first, b.span)
}

func (b *bench) telemetryURL(win window, cursor string, format string) string {
	v := url.Values{}
	v.Set("start_time", b.d.at(win.first).Format(time.RFC3339))
	v.Set("end_time", b.d.at(win.last).Format(time.RFC3339))
	if b.cfg.limit > 0 {
		v.Set("limit", fmt.Sprint(b.cfg.limit))
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	if format != "" {
		v.Set("format", format)
	}
	return fmt.Sprintf("%s/api/v1/gpus/%s/telemetry?%s", b.base, url.PathEscape(b.d.gpus[win.gpu].gpu.UUID), v.Encode())
}

// pages fetches a first page and, in every follow-th round, follows its
// next_cursor for up to follow pages, numbered i+j, of which the first
// requests are measured.
func (b *bench) pages(ctx context.Context, w *worker, i int) error {
	win := b.randomWindow(w)
	elapsed, _, err := b.get(ctx, w, b.telemetryURL(win, "", ""), nil)
	if err != nil {
		return err
	}
	size := int64(w.buf.Len())
	cursor, n, err := b.checkPage(w, w.buf.Bytes(), win, 0)
	if err != nil {
		return err
	}
	w.record(epPage, elapsed, size, n)
	// Every follow-th round follows, so next pages are spread over the run.
	f := b.cfg.follow
	if f <= 0 || i%f != 0 {
		return nil
	}
	seen := n
	for j := range f {
		if cursor == "" || i+j >= b.cfg.requests {
			return nil
		}
		elapsed, _, err := b.get(ctx, w, b.telemetryURL(win, cursor, ""), nil)
		if err != nil {
			return err
		}
		size := int64(w.buf.Len())
		if cursor, n, err = b.checkPage(w, w.buf.Bytes(), win, seen); err != nil {
			return err
		}
		seen += n
		w.record(epNextPage, elapsed, size, n)
	}
	return nil
}

func (b *bench) pageGzip(ctx context.Context, w *worker, _ int) error {
	win := b.randomWindow(w)
	elapsed, hdr, err := b.get(ctx, w, b.telemetryURL(win, "", ""), http.Header{"Accept-Encoding": {"gzip"}})
	if err != nil {
		return err
	}
	size := int64(w.buf.Len())
	if hdr.Get("Content-Encoding") != "gzip" {
		return fmt.Errorf("gzip page: Content-Encoding %q", hdr.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(&w.buf)
	if err != nil {
		return fmt.Errorf("gzip page: %w", err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		return fmt.Errorf("gzip page: %w", err)
	}
	_, n, err := b.checkPage(w, body, win, 0)
	if err != nil {
		return err
	}
	w.record(epPageGzip, elapsed, size, n)
	return nil
}

// storePage times the store alone, to split a page's time between the
// database and the HTTP layer.
func (b *bench) storePage(ctx context.Context, w *worker, _ int) error {
	win := b.randomWindow(w)
	q := ports.TelemetryQuery{GPUUUID: b.d.gpus[win.gpu].gpu.UUID, Start: b.d.at(win.first), End: b.d.at(win.last), Limit: int(b.limit)}
	start := time.Now()
	page, err := b.store.QueryTelemetry(ctx, q)
	elapsed := time.Since(start)
	if err != nil {
		return fmt.Errorf("store page: %w", err)
	}
	if want := min(b.limit, b.d.windowRows(win)); int64(len(page.Records)) != want {
		return fmt.Errorf("store page: got %d records, want %d", len(page.Records), want)
	}
	w.record(epStore, elapsed, 0, int64(len(page.Records)))
	return nil
}

func (b *bench) stream(ctx context.Context, w *worker, _ int) error {
	win := b.randomWindow(w)
	elapsed, _, err := b.get(ctx, w, b.telemetryURL(win, "", "ndjson"), nil)
	if err != nil {
		return err
	}
	lines := int64(bytes.Count(w.buf.Bytes(), []byte{'\n'}))
	if want := b.d.windowRows(win); lines != want {
		return fmt.Errorf("ndjson stream of %s: got %d entries, want %d", b.d.gpus[win.gpu].gpu.UUID, lines, want)
	}
	w.record(epStreamAll, elapsed, int64(w.buf.Len()), lines)
	return nil
}

// pageCheck is the part of a page the full check reads.
type pageCheck struct {
	GPUID   string `json:"gpu_id"`
	Entries []struct {
		Timestamp time.Time `json:"timestamp"`
		GPUUUID   string    `json:"gpu_uuid"`
	} `json:"entries"`
	NextCursor string `json:"next_cursor"`
}

var (
	timestampKey = []byte(`"timestamp":`)
	cursorKey    = []byte(`"next_cursor":"`)
)

// checkPage checks a page of window win after skip rows and returns its
// next_cursor and entry count. Every checkEvery-th page is decoded and each
// entry compared with the row the dataset puts there; the others are
// checked by counting entries and reading the cursor without decoding:
// decoding every 570 KB page would cost the client as much CPU as the
// server spends, on the same two cores, and its garbage would be collected
// during later timed requests.
func (b *bench) checkPage(w *worker, body []byte, win window, skip int64) (string, int64, error) {
	gpu := b.d.gpus[win.gpu].gpu.UUID
	total := b.d.windowRows(win)
	want := min(b.limit, total-skip)
	more := total-skip > b.limit
	w.checked++
	if w.checked%max(b.cfg.checkEvery, 1) != 0 {
		n := int64(bytes.Count(body, timestampKey))
		cursor := ""
		if i := bytes.LastIndex(body, cursorKey); i >= 0 {
			rest := body[i+len(cursorKey):]
			if end := bytes.IndexByte(rest, '"'); end >= 0 {
				cursor = string(rest[:end])
			}
		}
		if n != want || more != (cursor != "") {
			return "", 0, fmt.Errorf("page of %s after %d rows: %d entries, next_cursor %q; want %d entries, a cursor: %t",
				gpu, skip, n, cursor, want, more)
		}
		return cursor, n, nil
	}
	var page pageCheck
	if err := json.Unmarshal(body, &page); err != nil {
		return "", 0, fmt.Errorf("page: decode: %w", err)
	}
	if page.GPUID != gpu || int64(len(page.Entries)) != want {
		return "", 0, fmt.Errorf("page of %s after %d rows: gpu_id %s, %d entries, want %d", gpu, skip, page.GPUID, len(page.Entries), want)
	}
	if more != (page.NextCursor != "") {
		return "", 0, fmt.Errorf("page of %s after %d rows: next_cursor %q, want one: %t", gpu, skip, page.NextCursor, more)
	}
	for k, e := range page.Entries {
		wantTS, _ := b.d.rowAt(win, skip+int64(k))
		if e.GPUUUID != gpu || !e.Timestamp.Equal(wantTS) {
			return "", 0, fmt.Errorf("page of %s, entry %d: gpu %s at %s, want %s", gpu, skip+int64(k), e.GPUUUID, e.Timestamp, wantTS)
		}
	}
	return page.NextCursor, want, nil
}

// result is one request kind's summary.
type result struct {
	Name        string  `json:"name"`
	Requests    int     `json:"requests"`
	MinMS       float64 `json:"min_ms"`
	MedianMS    float64 `json:"median_ms"`
	P90MS       float64 `json:"p90_ms"`
	P99MS       float64 `json:"p99_ms"`
	MaxMS       float64 `json:"max_ms"`
	MeanMS      float64 `json:"mean_ms"`
	AvgBytes    float64 `json:"avg_response_bytes,omitempty"`
	AvgEntries  float64 `json:"avg_entries"`
	TargetP99MS float64 `json:"target_p99_ms,omitempty"`
	Pass        *bool   `json:"pass,omitempty"`
}

// summarize turns series into results in report order, judging targets.
func summarize(all map[string]*series, cfg measureConfig) []result {
	targets := map[string]time.Duration{epGPUs: cfg.targetGPUs, epPage: cfg.targetPage, epNextPage: cfg.targetPage,
		epLatest: cfg.targetLatest, epSeries: cfg.targetSeries, epFleet: cfg.targetFleet}
	var out []result
	for _, name := range []string{epGPUs, epPage, epNextPage, epPageGzip, epStore, epStreamAll, epLatest, epSeries, epFleet} {
		s := all[name]
		if s == nil || len(s.samples) == 0 {
			continue
		}
		r := summary(name, s)
		if t := targets[name]; t > 0 {
			r.TargetP99MS = ms(t)
			pass := r.P99MS < r.TargetP99MS
			r.Pass = &pass
		}
		out = append(out, r)
	}
	return out
}

func summary(name string, s *series) result {
	d := slices.Clone(s.samples)
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	n := len(d)
	return result{
		Name: name, Requests: n,
		MinMS: ms(d[0]), MedianMS: ms(percentile(d, 0.50)), P90MS: ms(percentile(d, 0.90)),
		P99MS: ms(percentile(d, 0.99)), MaxMS: ms(d[n-1]), MeanMS: ms(sum / time.Duration(n)),
		AvgBytes: float64(s.bytes) / float64(n), AvgEntries: float64(s.entries) / float64(n),
	}
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
