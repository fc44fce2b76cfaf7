package streamer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/scrape"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
	"github.com/gpufleet/telemetry/internal/ratelog/ratelogtest"
	"github.com/gpufleet/telemetry/ports"
)

// The tests are in package streamer so they can read the loop's counters
// with testutil.ToFloat64; they drive it only through its exported API.

var quiet = slog.New(slog.DiscardHandler)

func point(i int) domain.Point {
	v := float64(i)
	return domain.Point{Timestamp: time.Date(2025, 7, 18, 13, 42, 33, 0, time.UTC).Add(time.Duration(i) * time.Second),
		MetricName: "DCGM_FI_DEV_GPU_UTIL", GPUIndex: i % 8, Device: fmt.Sprintf("nvidia%d", i%8),
		GPUUUID: fmt.Sprintf("GPU-%04d", i), Hostname: "host-1", Value: &v}
}

// source yields points from a list, then io.EOF (or, when loop is set,
// starts over). Next is called only by the streamer's reading goroutine.
type source struct {
	points []domain.Point
	loop   bool
	err    error // returned instead of io.EOF at the end, when set
	next   int   // owned by the reading goroutine
}

func newSource(n int) *source {
	s := &source{}
	for i := range n {
		s.points = append(s.points, point(i))
	}
	return s
}

func (s *source) Next(ctx context.Context) (domain.Point, error) {
	if err := ctx.Err(); err != nil {
		return domain.Point{}, err
	}
	if s.next == len(s.points) {
		if !s.loop {
			if s.err != nil {
				return domain.Point{}, s.err
			}
			return domain.Point{}, io.EOF
		}
		s.next = 0
	}
	s.next++
	return s.points[s.next-1], nil
}

// publisher records every message it accepts. Its first failures calls
// fail with failWith; with always set, every call does.
type publisher struct {
	failures atomic.Int64 // calls still to fail
	failWith error
	always   bool
	calls    atomic.Int64
	// accepted holds every accepted message; sized by the test to hold them
	// all, so Publish never waits for the test to read.
	accepted chan ports.OutgoingMessage
	// block, when set, makes Publish wait for its context (entered is
	// signalled first, without blocking).
	block   bool
	entered chan struct{}
}

func newPublisher(capacity int) *publisher {
	return &publisher{accepted: make(chan ports.OutgoingMessage, capacity)}
}

func (p *publisher) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	p.calls.Add(1)
	if p.block {
		select {
		case p.entered <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ports.PublishResult{}, fmt.Errorf("publish: %w", ctx.Err())
	}
	if p.always || p.failures.Add(-1) >= 0 {
		return ports.PublishResult{}, fmt.Errorf("publish to %s: %w", topic, p.failWith)
	}
	for _, m := range msgs {
		p.accepted <- m
	}
	return ports.PublishResult{Accepted: len(msgs)}, nil
}

// drain returns what the publisher accepted, in seq order.
func (p *publisher) drain(t testing.TB, runID string) []ports.OutgoingMessage {
	t.Helper()
	var out []ports.OutgoingMessage
	for {
		select {
		case m := <-p.accepted:
			out = append(out, m)
		default:
			slices.SortFunc(out, func(a, b ports.OutgoingMessage) int { return seqOf(t, runID, a) - seqOf(t, runID, b) })
			return out
		}
	}
}

func seqOf(t testing.TB, runID string, m ports.OutgoingMessage) int {
	t.Helper()
	rest, ok := strings.CutPrefix(m.IdempotencyKey, runID+"/")
	require.True(t, ok, "key %q starts with the run id", m.IdempotencyKey)
	n, err := strconv.Atoi(rest)
	require.NoError(t, err)
	return n
}

func newStreamer(src ports.Source, pub ports.Publisher, cfg Config) (*Streamer, *prometheus.Registry) {
	reg := prometheus.NewPedanticRegistry()
	return New(src, pub, cfg, quiet, reg), reg
}

func TestPublishesEveryRowOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		rows    int
		senders int
		queue   int
	}{
		{"one row", 1, 1, 1},
		{"one sender", 50, 1, 1},
		{"many senders", 300, 8, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := newSource(tt.rows)
			pub := newPublisher(tt.rows)
			s, _ := newStreamer(src, pub, Config{Senders: tt.senders, QueueSize: tt.queue})
			require.NoError(t, s.Run(t.Context()))

			got := pub.drain(t, s.RunID())
			require.Len(t, got, tt.rows)
			for i, m := range got {
				require.Equal(t, s.RunID()+"/"+strconv.Itoa(i+1), m.IdempotencyKey, "keys are unique and sequential")
				var p domain.Point
				require.NoError(t, json.Unmarshal(m.Payload, &p))
				require.Equal(t, p.GPUUUID, m.Key, "the key is the GPU UUID")
				want := src.points[i]
				require.Equal(t, want.GPUUUID, p.GPUUUID, "row %d in source order", i)
				require.True(t, want.Timestamp.Equal(p.Timestamp))
				require.Equal(t, *want.Value, *p.Value)
			}
			require.EqualValues(t, tt.rows, pub.calls.Load(), "one publish per row, no retries")
			require.Equal(t, float64(tt.rows), testutil.ToFloat64(s.m.read))
			require.Equal(t, float64(tt.rows), testutil.ToFloat64(s.m.published))
			require.Zero(t, retried(s))
			require.Zero(t, testutil.ToFloat64(s.m.dropped))
		})
	}
}

func TestMaxRows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		rows    int
		loop    bool
		maxRows int
		want    int
	}{
		{"stops before the source ends", 10, false, 3, 3},
		{"a looping source", 4, true, 10, 10},
		{"the source ends first", 5, false, 10, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := newSource(tt.rows)
			src.loop = tt.loop
			pub := newPublisher(tt.want)
			s, _ := newStreamer(src, pub, Config{MaxRows: tt.maxRows, Senders: 2})
			require.NoError(t, s.Run(t.Context()))
			got := pub.drain(t, s.RunID())
			require.Len(t, got, tt.want)
			require.Equal(t, s.RunID()+"/"+strconv.Itoa(tt.want), got[len(got)-1].IdempotencyKey)
			require.Equal(t, float64(tt.want), testutil.ToFloat64(s.m.read))
			require.Equal(t, float64(tt.want), testutil.ToFloat64(s.m.published))
		})
	}
}

func TestSourceErrorEndsRun(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	src := newSource(2)
	src.err = boom
	pub := newPublisher(2)
	s, _ := newStreamer(src, pub, Config{})
	err := s.Run(t.Context())
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "read source")
	require.Len(t, pub.drain(t, s.RunID()), 2, "rows read before the error are still published")
}

func TestIntervalPacesEmissions(t *testing.T) {
	t.Parallel()
	// Fake time: the ticker fires without the test waiting for it.
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		at := make(chan time.Duration, 3) // 3: one per row, so Publish never waits
		pub := publishFunc(func(_ context.Context, _ string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
			at <- time.Since(start)
			return ports.PublishResult{Accepted: len(msgs)}, nil
		})
		s, _ := newStreamer(newSource(3), pub, Config{Interval: time.Hour})
		require.NoError(t, s.Run(t.Context()))
		close(at)
		var got []time.Duration
		for d := range at {
			got = append(got, d)
		}
		require.Equal(t, []time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour}, got, "one emission per tick (fake clock)")
	})
}

func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		failures    int64
		failWith    error
		always      bool
		retryFor    time.Duration
		wantPub     float64
		wantRetried func(float64) bool
		wantDropped float64
		minElapsed  time.Duration
	}{
		{name: "backpressure then success", failures: 3, failWith: ports.ErrBackpressure, retryFor: time.Hour,
			wantPub: 1, wantRetried: func(n float64) bool { return n == 3 }},
		{name: "outage then success", failures: 5, failWith: ports.ErrUnavailable, retryFor: time.Hour,
			wantPub: 1, wantRetried: func(n float64) bool { return n == 5 }},
		{name: "invalid is dropped at once", always: true, failWith: ports.ErrInvalidArgument, retryFor: time.Hour,
			wantDropped: 1, wantRetried: func(n float64) bool { return n == 0 }},
		{name: "RetryFor exceeded", always: true, failWith: ports.ErrUnavailable, retryFor: 10 * time.Second,
			wantDropped: 1, wantRetried: func(n float64) bool { return n > 0 }, minElapsed: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Fake time: the backoff passes instantly.
			synctest.Test(t, func(t *testing.T) {
				pub := newPublisher(1)
				pub.failures.Store(tt.failures)
				pub.failWith = tt.failWith
				pub.always = tt.always
				s, _ := newStreamer(newSource(1), pub, Config{RetryFor: tt.retryFor})
				start := time.Now()
				require.NoError(t, s.Run(t.Context()))
				got := pub.drain(t, s.RunID())
				require.Len(t, got, int(tt.wantPub))
				if len(got) == 1 {
					require.Equal(t, s.RunID()+"/1", got[0].IdempotencyKey, "a retry keeps its idempotency key")
				}
				require.Equal(t, tt.wantPub, testutil.ToFloat64(s.m.published))
				require.Equal(t, tt.wantDropped, testutil.ToFloat64(s.m.dropped))
				retried := retried(s)
				require.True(t, tt.wantRetried(retried), "retries: %v", retried)
				require.Equal(t, retried, testutil.ToFloat64(s.m.retried.WithLabelValues(retryReason(tt.failWith))), "counted under the error's reason")
				require.EqualValues(t, retried+1, pub.calls.Load(), "every retry is one more publish")
				require.LessOrEqual(t, time.Since(start), tt.retryFor+2*time.Second, "gives up about RetryFor after the first attempt (fake clock)")
				require.GreaterOrEqual(t, time.Since(start), tt.minElapsed, "never drops before RetryFor (fake clock)")
			})
		})
	}
}

// A queue that stays down: every message in flight is retried for RetryFor
// and then dropped, and the log gets a line per ratelog.Interval of each,
// each saying how many it stands for, not a line per retry and per drop.
// Backpressure retries stay at debug level: flow control is not a fault.
func TestOutageLogsOncePerInterval(t *testing.T) {
	t.Parallel()
	for _, window := range []int{0, 20} {
		t.Run(fmt.Sprintf("window=%d", window), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				pub := newPublisher(1)
				pub.always, pub.failWith = true, ports.ErrUnavailable
				logs := ratelogtest.NewSink()
				s := New(newSource(20), pub, Config{RetryFor: 25 * time.Second, Senders: 20, Window: window},
					logs.Logger(), prometheus.NewPedanticRegistry())
				require.NoError(t, s.Run(t.Context()))

				require.Equal(t, 20.0, testutil.ToFloat64(s.m.dropped))
				logged := logs.Drain()
				require.Equal(t, []int64{0}, ratelogtest.Skipped(logged, "message dropped"), "20 drops at once are one line")
				lines := ratelogtest.Skipped(logged, "publish failed; retrying")
				require.Len(t, lines, 3, "the first retry, then one at 10 s and one at 20 s")
				require.Positive(t, lines[1], "the line at 10 s stands for the retries since the first")
				total := int64(len(lines))
				for _, n := range lines {
					total += n
				}
				require.LessOrEqual(t, float64(total), retried(s),
					"the lines stand for retries the metric counted (those after the last line are still held)")
			})
		})
	}
}

func TestBackpressureDropsNothing(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const rows = 40
		pub := newPublisher(rows)
		pub.failures.Store(25) // spread over the senders
		pub.failWith = ports.ErrBackpressure
		s, _ := newStreamer(newSource(rows), pub, Config{Senders: 4, QueueSize: 4, RetryFor: time.Hour})
		require.NoError(t, s.Run(t.Context()))
		got := pub.drain(t, s.RunID())
		require.Len(t, got, rows)
		for i, m := range got {
			require.Equal(t, s.RunID()+"/"+strconv.Itoa(i+1), m.IdempotencyKey)
		}
		require.Equal(t, 25.0, retried(s))
		require.Zero(t, testutil.ToFloat64(s.m.dropped))
	})
}

func TestRunIDs(t *testing.T) {
	t.Parallel()
	a, _ := newStreamer(newSource(1), newPublisher(1), Config{})
	b, _ := newStreamer(newSource(1), newPublisher(1), Config{})
	require.NotEmpty(t, a.RunID())
	require.NotEqual(t, a.RunID(), b.RunID(), "a restarted streamer never reuses its keys")
}

func TestStopWhilePublishBlocks(t *testing.T) {
	t.Parallel()
	pub := newPublisher(0)
	pub.block = true
	pub.entered = make(chan struct{}, 1) // 1: Publish never waits for the test
	src := newSource(3)
	src.loop = true
	s, _ := newStreamer(src, pub, Config{Senders: 2, QueueSize: 8})
	s.Start()
	<-pub.entered
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a deadlock guard, not a timing check
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	select {
	case <-s.Done():
	default:
		t.Fatal("Stop returned before the loop did")
	}
	require.Zero(t, testutil.ToFloat64(s.m.dropped), "an unacknowledged publish cut short by Stop is not a drop")
	require.Zero(t, testutil.ToFloat64(s.m.published))
}

func TestStartRunsUntilTheSourceEnds(t *testing.T) {
	t.Parallel()
	pub := newPublisher(5)
	s, _ := newStreamer(newSource(5), pub, Config{})
	s.Start()
	<-s.Done()
	require.Len(t, pub.drain(t, s.RunID()), 5)
	require.NoError(t, s.Stop(t.Context()), "Stop after the end is harmless")
}

func TestStopWithoutStart(t *testing.T) {
	t.Parallel()
	s, _ := newStreamer(newSource(1), newPublisher(1), Config{})
	require.NoError(t, s.Stop(t.Context()))
}

func TestRunEndsWithItsContext(t *testing.T) {
	t.Parallel()
	src := newSource(1)
	src.loop = true
	pub := newPublisher(0)
	pub.block = true
	pub.entered = make(chan struct{}, 1)
	s, _ := newStreamer(src, pub, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	<-pub.entered
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	s := New(newSource(1), newPublisher(1), Config{}, nil, nil)
	require.Equal(t, domain.TelemetryTopic, s.cfg.Topic)
	require.Equal(t, 1, s.cfg.Senders)
	require.Equal(t, 1, s.cfg.QueueSize)
	require.Equal(t, time.Minute, s.cfg.RetryFor)
	require.NotNil(t, s.log)
}

func TestPublishesToTheConfiguredTopic(t *testing.T) {
	t.Parallel()
	var topic atomic.Value
	pub := publishFunc(func(_ context.Context, tp string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
		topic.Store(tp)
		return ports.PublishResult{Duplicates: len(msgs)}, nil
	})
	s, _ := newStreamer(newSource(1), pub, Config{Topic: "gpu.metrics"})
	require.NoError(t, s.Run(t.Context()))
	require.Equal(t, "gpu.metrics", topic.Load())
	require.Equal(t, 1.0, testutil.ToFloat64(s.m.duplicates), "a duplicate is counted, not published again")
	require.Zero(t, testutil.ToFloat64(s.m.published))
}

type publishFunc func(context.Context, string, []ports.OutgoingMessage) (ports.PublishResult, error)

func (f publishFunc) Publish(ctx context.Context, topic string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
	return f(ctx, topic, msgs)
}

func TestMetricsLint(t *testing.T) {
	t.Parallel()
	s, reg := newStreamer(newSource(2), newPublisher(2), Config{})
	require.NoError(t, s.Run(t.Context()))
	promxtest.RequireLintClean(t, reg)
	for _, name := range []string{"streamer_messages_published_total", "streamer_rows_read_total", "streamer_publish_duration_seconds"} {
		require.Equal(t, 1, testutil.CollectAndCount(reg, name), name)
	}
}

// retried sums streamer_publish_retries_total over its reasons.
func retried(s *Streamer) float64 {
	var n float64
	for _, r := range retryReasons {
		n += testutil.ToFloat64(s.m.retried.WithLabelValues(r))
	}
	return n
}

// sent is one emission of runPaced: when it went out (fake clock) and the
// timestamp its point carried.
type sent struct {
	after time.Duration
	ts    time.Time
}

// runPaced streams 9 points of src with a 30 s scrape interval, inside a
// synctest bubble, and returns what went out, in order.
func runPaced(t *testing.T, src ports.Source) []sent {
	start := time.Now()
	at := make(chan sent, 9) // 9: every emission, so Publish never waits
	pub := publishFunc(func(_ context.Context, _ string, msgs []ports.OutgoingMessage) (ports.PublishResult, error) {
		var p domain.Point
		require.NoError(t, json.Unmarshal(msgs[0].Payload, &p))
		at <- sent{time.Since(start), p.Timestamp}
		return ports.PublishResult{Accepted: len(msgs)}, nil
	})
	s, _ := newStreamer(src, pub, Config{ScrapeInterval: 30 * time.Second, MaxRows: 9, Senders: 1})
	require.NoError(t, s.Run(t.Context()))
	close(at)
	var out []sent
	for e := range at {
		out = append(out, e)
	}
	require.Len(t, out, 9)
	return out
}

// TestScrapeIntervalPacesPasses: with a scrape interval each pass over the
// source (every GPU and metric once) starts one interval after the previous
// one, and points held for the next pass are stamped when they go out.
func TestScrapeIntervalPacesPasses(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(3)
		src.loop = true
		var passes []time.Duration
		var stamps []time.Time
		for _, e := range runPaced(t, src) {
			passes = append(passes, e.after.Truncate(time.Second))
			stamps = append(stamps, e.ts)
		}
		require.True(t, start.Add(30*time.Second).Equal(stamps[3]), "the held point is stamped when it goes out: %s", stamps[3])
		require.Equal(t, []time.Duration{0, 0, 0, 30 * time.Second, 30 * time.Second, 30 * time.Second,
			time.Minute, time.Minute, time.Minute}, passes, "three passes, 30 s apart (fake clock)")
	})
}

// The scraper is the live source the streamer leaves alone: renaming its
// Interval method must not quietly bring the replay's pacing back.
var _ selfScheduled = (*scrape.Source)(nil)

// liveSource is a source with its own schedule, as the scraper is.
type liveSource struct{ *source }

func (liveSource) Interval() time.Duration { return 15 * time.Second }

// TestScrapeIntervalLeavesALiveSourceAlone: a source that keeps its own
// schedule (the scraper) is not paced again as a replay, so make run's and
// the chart's STREAMER_SCRAPE_INTERVAL=30s neither holds a 15 s scrape's
// rounds back nor restamps its points.
func TestScrapeIntervalLeavesALiveSourceAlone(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		src := liveSource{newSource(3)}
		src.loop = true
		for i, e := range runPaced(t, src) {
			require.Zero(t, e.after, "emission %d waited: the live source was paced as a replay", i)
			require.True(t, point(i%3).Timestamp.Equal(e.ts), "emission %d keeps its scrape time, got %s", i, e.ts)
		}
	})
}
