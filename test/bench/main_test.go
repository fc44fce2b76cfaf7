package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/test/pgadmin"
	"github.com/gpufleet/telemetry/test/pgtest"
	"github.com/gpufleet/telemetry/test/stack"
)

func TestParseFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, c config)
	}{
		{name: "defaults", check: func(t *testing.T, c config) {
			require.Equal(t, 3, c.Runs)
			require.Equal(t, 4, c.Streamers)
			require.Equal(t, 4, c.Collectors)
			require.Equal(t, 1, c.Readers)
			require.Equal(t, []string{backendPostgres, backendPostgresRequest, backendNATS, backendNATSDefault}, c.Backends, "streaming and request pipelines, NATS at equal and at default durability")
			require.Equal(t, [][2]int{{1, 1}, {4, 4}, {10, 10}}, c.Scaling)
			require.Equal(t, 10*time.Second, c.Duration)
			require.InDelta(t, 0.5, c.LatencyLoad, 1e-9)
		}},
		{name: "postgres only, no scaling", args: []string{"-backends", "postgres", "-scaling", ""}, check: func(t *testing.T, c config) {
			require.Equal(t, []string{backendPostgres}, c.Backends)
			require.Empty(t, c.Scaling)
		}},
		{name: "× as separator", args: []string{"-scaling", "2×3"}, check: func(t *testing.T, c config) {
			require.Equal(t, [][2]int{{2, 3}}, c.Scaling)
		}},
		{name: "too many streamers", args: []string{"-streamers", "11"}, wantErr: "-streamers 11"},
		{name: "no collectors", args: []string{"-collectors", "0"}, wantErr: "-collectors 0"},
		{name: "unknown backend", args: []string{"-backends", "kafka"}, wantErr: "unknown backend"},
		{name: "bad scaling", args: []string{"-scaling", "4by4"}, wantErr: "-scaling"},
		{name: "scaling out of range", args: []string{"-scaling", "11x1"}, wantErr: "-scaling"},
		{name: "short window", args: []string{"-duration", "500ms"}, wantErr: "at least 1s"},
		{name: "latency load", args: []string{"-latency-load", "1.5"}, wantErr: "-latency-load"},
		{name: "fixed latency rate", args: []string{"-latency-rate", "5600"}, check: func(t *testing.T, c config) {
			require.InDelta(t, 5600, c.LatencyRate, 1e-9)
		}},
		{name: "negative latency rate", args: []string{"-latency-rate", "-1"}, wantErr: "-latency-rate"},
		{name: "no latency runs", args: []string{"-latency-runs", "0"}, wantErr: "-latency-runs"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseFlags(tt.args)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []float64
		want summary
	}{
		{name: "none", in: nil, want: summary{}},
		{name: "one", in: []float64{7}, want: summary{Median: 7, Min: 7, Max: 7, N: 1}},
		{name: "odd", in: []float64{9, 1, 5}, want: summary{Median: 5, Min: 1, Max: 9, N: 3}},
		{name: "even", in: []float64{4, 1, 3, 10}, want: summary{Median: 3.5, Min: 1, Max: 10, N: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := append([]float64(nil), tt.in...)
			require.Equal(t, tt.want, summarize(tt.in))
			require.Equal(t, in, tt.in, "the input is not reordered")
		})
	}
}

func TestPace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		target          float64
		streamers       int
		wantN, wantRate int
		wantOffered     float64
	}{
		{name: "even split", target: 5000, streamers: 4, wantN: 4, wantRate: 1250, wantOffered: 5000},
		{name: "rounded to whole msgs/s", target: 5151.4, streamers: 4, wantN: 4, wantRate: 1288, wantOffered: 5152},
		{name: "slower than one a second each", target: 2, streamers: 4, wantN: 4, wantRate: 1, wantOffered: 4},
		{name: "nothing to pace", target: 0, streamers: 4},
		{name: "no streamers", target: 100, streamers: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, rate, offered := pace(tt.target, tt.streamers)
			require.Equal(t, tt.wantN, n)
			require.Equal(t, tt.wantRate, rate)
			require.InDelta(t, tt.wantOffered, offered, 1e-6)
		})
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		line     string
		wantSecs float64
		wantPPID int
		wantErr  bool
	}{
		{name: "plain", line: "1234 (postgres) S 99 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0",
			wantSecs: 3, wantPPID: 99},
		{name: "name with spaces and parens", line: "42 (a (b) c) R 7 42 42 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 0 0",
			wantSecs: 0.03, wantPPID: 7},
		{name: "no name", line: "42 R 7", wantErr: true},
		{name: "truncated", line: "42 (x) R 7 1 2", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secs, ppid, err := parseStat(tt.line)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.InDelta(t, tt.wantSecs, secs, 1e-9)
			require.Equal(t, tt.wantPPID, ppid)
		})
	}
	// This process, for real.
	secs, ppid, err := procCPU(os.Getpid())
	require.NoError(t, err)
	require.Equal(t, os.Getppid(), ppid)
	require.GreaterOrEqual(t, secs, 0.0)
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	const text = `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
collector_errors_total{stage="lease"} 2
collector_errors_total{stage="ack {odd} \"label\"} x"} 3
streamer_messages_published_total 1e+06
go_goroutines 17
`
	tests := []struct {
		name    string
		text    string
		wanted  []string
		want    metricSums
		wantErr bool
	}{
		{name: "unlabelled and summed labels", text: text,
			wanted: []string{"process_cpu_seconds_total", "collector_errors_total", "streamer_messages_published_total"},
			want:   metricSums{"process_cpu_seconds_total": 12.5, "collector_errors_total": 5, "streamer_messages_published_total": 1e6}},
		{name: "absent metric", text: text, wanted: []string{"nope_total"}, want: metricSums{}},
		{name: "prefix is not a match", text: "process_cpu_seconds_total_extra 4\n", wanted: []string{"process_cpu_seconds_total"}, want: metricSums{}},
		{name: "unterminated labels", text: "collector_errors_total{stage=\"x} 1\n", wanted: []string{"collector_errors_total"}, wantErr: true},
		{name: "bad value", text: "process_cpu_seconds_total abc\n", wanted: []string{"process_cpu_seconds_total"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseMetrics(strings.NewReader(tt.text), tt.wanted...)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestCPUDelta(t *testing.T) {
	t.Parallel()
	before := map[int]float64{1: 10, 2: 5, 3: 1}
	after := map[int]float64{1: 12, 2: 5.5, 4: 0.25} // 3 ended, 4 started
	require.InDelta(t, 2.75, cpuDelta(before, after), 1e-9)
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	got, err := pgadmin.WithDatabase("postgres://u:p@h:5432/postgres?sslmode=disable", "bench")
	require.NoError(t, err)
	require.Equal(t, "postgres://u:p@h:5432/bench?sslmode=disable", got)
	got, err = pgadmin.WithDatabase("host=h user=u", "bench")
	require.NoError(t, err)
	require.Equal(t, "host=h user=u dbname=bench", got)
	require.Equal(t, "postgres://u:xxxxx@h:5432/postgres", pgadmin.Redact("postgres://u:secret@h:5432/postgres"))
}

func TestNATSReason(t *testing.T) {
	t.Parallel()
	require.Contains(t, natsReason(&testErr{"collector-1 exited before ready: QUEUE_BACKEND=nats: the NATS adapter is not built into this binary yet"}),
		"not wired")
	require.Equal(t, "first line", natsReason(&testErr{"first line\nsecond"}))
}

type testErr struct{ s string }

func (e *testErr) Error() string { return e.s }

// points loads the shipped dump.
func points(t *testing.T) *batchSource {
	t.Helper()
	root, err := stack.Root()
	require.NoError(t, err)
	src, err := loadPoints(t.Context(), filepath.Join(root, filepath.FromSlash(stack.ShippedCSV)))
	require.NoError(t, err)
	require.Len(t, src.points, 2470)
	return src
}

func TestMeasureFloor(t *testing.T) {
	t.Parallel()
	src := points(t)
	for _, method := range []string{floorCopy, floorPipeline} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			dsn := pgtest.NewDatabase(t)
			pool := pgtest.Pool(t, dsn)
			var db string
			require.NoError(t, pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&db))
			// Seconds, not a tenth: on a busy machine (make test runs four
			// packages at once) the first batches through a fresh database
			// once took longer than a 100 ms warm-up and a 1 s window, and
			// the pipeline floor counted 0 messages.
			cfg := floorConfig{method: method, workers: 2, batch: 50, lease: 80, warmup: 500 * time.Millisecond, duration: 2 * time.Second}
			res, err := measureFloor(t.Context(), pool, db, src, cfg)
			require.NoError(t, err)
			require.Positive(t, res.Messages)
			require.InDelta(t, float64(res.Messages)/res.Seconds, res.MsgsPerSecond, 1e-6)
			require.GreaterOrEqual(t, res.Seconds, cfg.duration.Seconds())

			var stored, queued int64
			require.NoError(t, pool.QueryRow(t.Context(), sqlCountTelemetry).Scan(&stored))
			require.NoError(t, pool.QueryRow(t.Context(), sqlCountQueue).Scan(&queued))
			require.GreaterOrEqual(t, stored, res.Messages, "every counted message left a telemetry row")
			if method == floorCopy {
				require.Nil(t, res.Counts)
				require.Zero(t, res.Messages%int64(cfg.batch), "whole batches are counted")
				require.Zero(t, stored%int64(cfg.batch), "whole batches only: none is cut short")
				require.Zero(t, queued, "every batch finished with its delete")
				return
			}
			c := res.Counts
			require.NotNil(t, c)
			require.True(t, c.OK, c.Problem)
			require.Equal(t, c.Acked, stored, "every acked message is stored once")
			require.Equal(t, c.Published-c.Acked, queued, "the others are still queued")
			require.Zero(t, c.Published%int64(cfg.batch), "publishes are full batches")
			require.GreaterOrEqual(t, c.Acked, res.Messages)
			var series, gpus int64
			require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM telemetry_series").Scan(&series))
			require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM gpus").Scan(&gpus))
			require.Positive(t, series, "the store registered the series")
			require.Positive(t, gpus, "and kept the GPU registry")
		})
	}
}

func TestUniqueClock(t *testing.T) {
	t.Parallel()
	var c uniqueClock
	seen := map[time.Time]bool{}
	prev := time.Time{}
	for range 10000 {
		ts := c.now()
		require.False(t, seen[ts], "no instant twice")
		require.True(t, ts.After(prev), "strictly increasing")
		require.Equal(t, ts, ts.Truncate(time.Microsecond), "microseconds, PostgreSQL's resolution")
		seen[ts], prev = true, ts
	}
}

func TestCountCheckJudge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		in          countCheck
		wantOK      bool
		wantLost    int64
		wantDup     int64
		wantProblem string
	}{
		{name: "every message stored once", wantOK: true,
			in: countCheck{Accepted: 1000, AcceptedExact: true, Stored: 1000, Persisted: 1000}},
		{name: "two messages with one natural key: counted duplicate, not lost", wantOK: true,
			in: countCheck{Accepted: 1000, AcceptedExact: true, Stored: 999, Persisted: 999, SampleDuplicates: 1}},
		{name: "dead-lettered and expired are handled", wantOK: true,
			in: countCheck{Accepted: 1000, AcceptedExact: true, Stored: 990, Persisted: 990, DeadLettered: 4, Expired: 6}},
		{name: "a redelivery's duplicate is not a loss", wantOK: true,
			in: countCheck{Accepted: 1000, AcceptedExact: true, Stored: 1000, Persisted: 1000, SampleDuplicates: 5, Redelivered: 5}},
		{name: "lost", wantLost: 3, wantProblem: "3 accepted messages lost",
			in: countCheck{Accepted: 1000, AcceptedExact: true, Stored: 997, Persisted: 997}},
		{name: "stored beyond accepted", wantDup: 2, wantProblem: "2 rows stored beyond",
			in: countCheck{Accepted: 1000, AcceptedExact: true, Stored: 1002, Persisted: 1002}},
		{name: "a lower bound of accepted cannot prove duplication", wantOK: true,
			in: countCheck{Accepted: 1000, Stored: 1002, Persisted: 1002}},
		{name: "queue not drained", wantProblem: "still queued",
			in: countCheck{Accepted: 1000, AcceptedExact: true, Stored: 1000, Persisted: 1000, QueueLeft: 7}},
		{name: "collectors miscount", wantProblem: "collectors counted",
			in: countCheck{Accepted: 1000, AcceptedExact: true, Stored: 1000, Persisted: 1001}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.in
			c.judge()
			require.Equal(t, tt.wantOK, c.OK, c.Problem)
			require.Equal(t, tt.wantLost, c.Lost)
			require.Equal(t, tt.wantDup, c.Duplicated)
			if tt.wantProblem != "" {
				require.Contains(t, c.Problem, tt.wantProblem)
			}
		})
	}
}

func TestRatiosAndCounts(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags(nil)
	require.NoError(t, err)
	r := newResults(cfg)
	floor := func(pipeline, limit float64) floorRound {
		return floorRound{Methods: []floorResult{{Method: floorPipeline, MsgsPerSecond: pipeline, PGCPUPer1k: 0.06, ClientCPUPer1k: 0.1},
			{Method: floorCopy, MsgsPerSecond: limit, PGCPUPer1k: 0.03, ClientCPUPer1k: 0.01}}}
	}
	r.Floor.Rounds = []floorRound{floor(20000, 50000), floor(10000, 40000), floor(30000, 45000)}
	run := func(name string, rate float64, ok bool) pipelineResult {
		return pipelineResult{Run: name, Persisted: 1000, MsgsPerSecond: rate, Counts: &countCheck{OK: ok, Problem: map[bool]string{false: "1 lost"}[ok]}}
	}
	r.backend(backendPostgres).Runs = []pipelineResult{run("a", 8000, true), run("b", 6000, true), run("c", 7000, true)}
	r.backend(backendPostgresRequest).Runs = []pipelineResult{run("d", 2000, true)}
	r.backend(backendNATS).Runs = []pipelineResult{run("e", 3500, true)}
	r.backend(backendNATSDefault).Runs = []pipelineResult{run("f", 14000, false)}
	r.finish(cfg, time.Minute)
	require.Equal(t, summary{Median: 20000, Min: 10000, Max: 30000, N: 3}, r.Floor.Floor, "the floor is the pipeline method's line")
	require.Equal(t, summary{Median: 45000, Min: 40000, Max: 50000, N: 3}, r.Floor.PhysicalLimit, "the physical limit is COPY's")
	require.InDelta(t, 0.06, r.Floor.CPUPer1k[floorPipeline][rolePostgres].Median, 1e-9)
	require.InDelta(t, 0.1, r.Floor.CPUPer1k[floorPipeline][roleHarness].Median, 1e-9)
	require.InDelta(t, 7000.0/20000, r.Ratios.StreamOverFloor, 1e-9, "streaming median over the floor's median")
	require.InDelta(t, 7000.0/45000, r.Ratios.StreamOverPhysicalLimit, 1e-9)
	require.InDelta(t, 20000.0/45000, r.Ratios.FloorOverPhysicalLimit, 1e-9)
	require.InDelta(t, 3.5, r.Ratios.StreamOverRequest, 1e-9)
	require.InDelta(t, 2, r.Ratios.PostgresOverNATSDurable, 1e-9)
	require.InDelta(t, 0.5, r.Ratios.PostgresOverNATSDefault, 1e-9)
	require.False(t, r.Counts.OK)
	require.Equal(t, 6, r.Counts.Checked)
	require.Equal(t, []string{"f: 1 lost"}, r.Counts.Failed)

	path := filepath.Join(t.TempDir(), "results.json")
	require.NoError(t, r.write(path))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var doc struct {
		Ratios map[string]float64 `json:"ratios"`
		Counts countsSummary      `json:"counts"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))
	for _, k := range []string{"stream_over_request", "stream_over_floor", "postgres_over_nats_durable", "postgres_over_nats_default"} {
		require.Contains(t, doc.Ratios, k, "issue 16's ratio %s", k)
	}
	require.False(t, doc.Counts.OK)
}

func TestMeasureFloorUnknownMethod(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	_, err := measureFloor(t.Context(), pool, "", points(t), floorConfig{method: "carrier-pigeon", workers: 1, batch: 1, duration: time.Second})
	require.ErrorContains(t, err, "carrier-pigeon")
}

// TestPipelineRun runs the real binaries for a few seconds and checks that
// the window is measured: rows persisted, latencies, CPU for every role.
func TestPipelineRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the apps")
	}
	t.Parallel()
	root, err := stack.Root()
	require.NoError(t, err)
	binDir := t.TempDir()
	// The build has its own bound: on a cold build cache it alone can take
	// longer than the run's five minutes.
	bctx, bcancel := context.WithTimeout(t.Context(), stack.BuildTimeout)
	defer bcancel()
	_, err = buildApps(bctx, root, binDir, []string{backendPostgres})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	srv, err := openServer(ctx)
	require.NoError(t, err)
	db := "bench_test_" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "_")
	t.Cleanup(func() { _ = srv.drop(context.Background(), db) })
	h := &harness{srv: srv, binDir: binDir, logDir: t.TempDir(), dbName: db,
		csvPath: filepath.Join(root, filepath.FromSlash(stack.ShippedCSV))}
	res, err := h.runPipeline(ctx, pipelineConfig{Backend: backendPostgres, Streamers: 1, Collectors: 1, Readers: 2,
		warmup: time.Second, duration: 3 * time.Second, name: "test"})
	require.NoError(t, err)
	require.Positive(t, res.Persisted)
	require.InDelta(t, float64(res.Persisted)/res.Seconds, res.MsgsPerSecond, 1e-6)
	require.Positive(t, res.OfferedPerSecond)
	// The store keeps no ingestion time (ADR 0004): latency is not measured here.
	require.GreaterOrEqual(t, res.LatencyP99, res.LatencyP50)
	require.GreaterOrEqual(t, res.LatencyMax, res.LatencyP99)
	require.GreaterOrEqual(t, res.Backlog, int64(0))
	for _, role := range []string{roleStreamer, roleWriter, roleReader, roleCollector, roleTotal} {
		require.Positive(t, res.CPUSeconds[role], role)
		require.Positive(t, res.CPUPer1k[role], role)
	}
	if res.PostgresCPU == "" {
		require.Positive(t, res.CPUSeconds[rolePostgres], "the local server's backends worked")
	}
	// The database is the run's: dropping it is the next run's job.
	pool, err := pgxpool.New(ctx, mustDSN(t, srv, db))
	require.NoError(t, err)
	defer pool.Close()
	var stored int64
	require.NoError(t, pool.QueryRow(ctx, sqlCountTelemetry).Scan(&stored))
	require.GreaterOrEqual(t, stored, res.Persisted)
	// The run drained: every accepted message is stored once.
	c := res.Counts
	require.NotNil(t, c)
	require.True(t, c.OK, c.Problem)
	require.True(t, c.AcceptedExact)
	require.Positive(t, c.Accepted)
	require.Zero(t, c.QueueLeft)
	require.Equal(t, stored, c.Stored)
}

func mustDSN(t *testing.T, srv *server, db string) string {
	t.Helper()
	dsn, err := pgadmin.WithDatabase(srv.admin, db)
	require.NoError(t, err)
	return dsn
}

func TestBackendSummaryLeavesOutEmptyRuns(t *testing.T) {
	t.Parallel()
	run := func(persisted int64, rate, p99, cpu float64) pipelineResult {
		return pipelineResult{Persisted: persisted, MsgsPerSecond: rate, LatencyP99: p99, CPUPer1k: map[string]float64{roleTotal: cpu}}
	}
	b := &backendSection{Available: true, Runs: []pipelineResult{run(100, 10, 0.5, 0.2), run(0, 0, 0, 0), run(300, 30, 0.9, 0.4)}}
	b.summarize()
	require.Equal(t, summary{Median: 10, Min: 0, Max: 30, N: 3}, b.Throughput, "an empty run is a throughput of 0")
	require.Equal(t, summary{Median: 0.7, Min: 0.5, Max: 0.9, N: 2}, b.P99, "but has no latency")
	require.Equal(t, 2, b.CPUPer1k[roleTotal].N, "nor a CPU cost per message")
}

func TestReportPrints(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags(nil)
	require.NoError(t, err)
	r := newResults(cfg)
	r.Floor.Rounds = []floorRound{{Methods: []floorResult{{Method: floorPipeline, MsgsPerSecond: 20000, PGCPUPer1k: 0.05},
		{Method: floorCopy, MsgsPerSecond: 40000, PGCPUPer1k: 0.03}}}}
	pg := pipelineResult{Persisted: 1000, MsgsPerSecond: 10000, LatencyP50: 0.1, LatencyP99: 0.5, CPUPer1k: map[string]float64{roleTotal: 0.15},
		Counts: &countCheck{OK: true}}
	r.backend(backendPostgres).Runs = []pipelineResult{pg}
	r.backend(backendNATS).markUnavailable("natsd does not build")
	r.Latency = []*latencyPoint{{Backend: backendPostgres, Load: 0.5, Sustained: 10000, TargetRate: 5000, Streamers: 4, Rate: 1250, PacedRate: 5000, Runs: []pipelineResult{pg}}}
	r.finish(cfg, time.Minute)
	require.InDelta(t, 0.5, r.Ratios.StreamOverFloor, 1e-9)
	require.Zero(t, r.Ratios.PostgresOverNATSDurable)
	require.True(t, r.Counts.OK)
	var b strings.Builder
	printReport(&b, r)
	out := b.String()
	for _, want := range []string{"floor: the pipeline's statements", "20000", "physical limit: COPY only", "40000", "pipeline postgres 4×4", "10000",
		"nats: unavailable (natsd does not build)", "streaming / floor (the pipeline's statements)  0.50",
		"streaming stamp→persisted p50 at 50% of 10000", "streaming stamp→persisted p99 at 50% of 10000", "COUNTS: 2 runs checked"} {
		require.Contains(t, out, want)
	}
	path := filepath.Join(t.TempDir(), "results.json")
	require.NoError(t, r.write(path))
	b2, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(b2), `"stream_over_floor": 0.5`)
}

func TestLatencyPointMedians(t *testing.T) {
	t.Parallel()
	run := func(name string, persisted int64, p50, p99 float64) pipelineResult {
		return pipelineResult{Run: name, Persisted: persisted, LatencyP50: p50, LatencyP99: p99, AckP50: p50 / 2, AckP99: p99 / 2,
			Counts: &countCheck{OK: true}}
	}
	lp := &latencyPoint{Backend: backendPostgres, TargetRate: 5000, Streamers: 4, Rate: 1250, PacedRate: 5000,
		Runs: []pipelineResult{run("a", 1000, 0.080, 0.300), run("b", 1000, 0.040, 0.900), run("c", 0, 0, 0), run("d", 1000, 0.150, 0.200)}}
	lp.summarize()
	require.Equal(t, summary{Median: 0.080, Min: 0.040, Max: 0.150, N: 3}, lp.P50, "medians of the runs that stored something")
	require.Equal(t, summary{Median: 0.300, Min: 0.200, Max: 0.900, N: 3}, lp.P99, "each quantile's own median")
	require.InDelta(t, 0.040, lp.AckP50.Median, 1e-9)
	require.Equal(t, "a", lp.Result.Run, "the run of the median p50 is the one reported step by step")

	cfg, err := parseFlags([]string{"-latency-rate", "5000"})
	require.NoError(t, err)
	require.Equal(t, 3, cfg.LatencyRuns)
	r := newResults(cfg)
	r.Latency = []*latencyPoint{lp}
	r.finish(cfg, time.Minute)
	require.Equal(t, 4, r.Counts.Checked, "every latency run's books are checked")
	var p50 target
	for _, tg := range r.Targets {
		if strings.Contains(tg.Name, "p50") {
			p50 = tg
		}
	}
	require.InDelta(t, 0.080, p50.Value, 1e-9, "the target is judged on the median")
	require.False(t, *p50.Met)
	var b strings.Builder
	printReport(&b, r)
	require.Contains(t, b.String(), "80ms [40ms–150ms]")
}

func TestReportPrintsFixedLatencyRate(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags([]string{"-latency-rate", "5600"})
	require.NoError(t, err)
	r := newResults(cfg)
	pg := pipelineResult{Persisted: 1000, MsgsPerSecond: 5600, LatencyP50: 0.02, LatencyP99: 0.1, Counts: &countCheck{OK: true}}
	r.Latency = []*latencyPoint{{Backend: backendPostgres, TargetRate: 5600, Streamers: 4, Rate: 1400, PacedRate: 5600, Runs: []pipelineResult{pg}}}
	r.finish(cfg, time.Minute)
	var b strings.Builder
	printReport(&b, r)
	out := b.String()
	require.Contains(t, out, "postgres at a fixed 5600 msgs/s")
	require.Contains(t, out, "streaming stamp→persisted p50 at a fixed 5600 msgs/s")
	require.NotContains(t, out, "THROUGHPUT", "a fixed-rate run measures no throughput, so prints no empty table")
	require.NotContains(t, out, "RATIOS")
}

func TestHistogramQuantile(t *testing.T) {
	t.Parallel()
	text := `# TYPE x histogram
x_bucket{le="0.1"} 0
x_bucket{le="0.2"} 50
x_bucket{le="0.4"} 100
x_bucket{le="+Inf"} 100
x_sum 20
x_count 100
other_bucket{le="1"} 7
`
	hs, err := parseHistograms(strings.NewReader(text), "x")
	require.NoError(t, err)
	h := hs["x"]
	require.InDelta(t, 0.2, h.quantile(0.5), 1e-9, "the median is the bound where half is counted")
	require.InDelta(t, 0.396, h.quantile(0.99), 1e-9, "interpolated inside its bucket")
	require.InDelta(t, 0.4, h.quantile(1), 1e-9)
	before := histogram{0.1: 0, 0.2: 50, 0.4: 50, math.Inf(1): 50}
	require.InDelta(t, 0.3, h.minus(before).quantile(0.5), 1e-9, "the window's own observations")
	require.Zero(t, histogram{}.quantile(0.5))
	require.NotContains(t, hs, "other")
}
