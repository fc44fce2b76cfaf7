// Package e2e runs the real binaries against a real PostgreSQL and checks
// the pipeline's promises end to end: every streamed row is stored exactly
// once, with the time it was streamed, and the queue drains.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/test/pgtest"
	"github.com/gpufleet/telemetry/test/stack"
)

const csvRows = 2470

var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := stack.Root()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := stack.Build(ctx, root, dir, "mqwriter", "mqreader", "collector", "streamer", "natsd", "apigw"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// pipeline is one running set of services over one database.
type pipeline struct {
	t      *testing.T
	dsn    string
	pool   *pgxpool.Pool
	logDir string
	writer *stack.Proc
	reader *stack.Proc
	// natsURL is set when the queue is NATS JetStream instead of ours.
	natsURL string
}

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	p := &pipeline{t: t, dsn: dsn, pool: pgtest.Pool(t, dsn), logDir: t.TempDir()}
	p.writer = p.start("mqwriter", map[string]string{})
	p.reader = p.start("mqreader", map[string]string{"PARTITIONS": "0-255"})
	return p
}

// newNATSPipeline runs the streamer and collector on NATS JetStream (an
// embedded server with fsync on every write) instead of mqwriter/mqreader.
func newNATSPipeline(t *testing.T) *pipeline {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	p := &pipeline{t: t, dsn: dsn, pool: pgtest.Pool(t, dsn), logDir: t.TempDir()}
	natsAddr, err := stack.FreeAddr()
	require.NoError(t, err)
	p.start("natsd", map[string]string{"NATS_ADDR": natsAddr, "NATS_STORE_DIR": t.TempDir()})
	p.natsURL = "nats://" + natsAddr
	return p
}

func (p *pipeline) start(name string, env map[string]string) *stack.Proc {
	p.t.Helper()
	addr, err := stack.FreeAddr()
	require.NoError(p.t, err)
	env["DATABASE_URL"] = p.dsn
	env["LOG_LEVEL"] = "warn"
	proc, err := stack.Start(filepath.Join(binDir, name), name, addr, p.logDir, env)
	require.NoError(p.t, err)
	p.t.Cleanup(func() { _ = proc.Stop(45 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := "/readyz"
	require.NoError(p.t, proc.WaitReady(ctx, path))
	return proc
}

func (p *pipeline) streamer(rows int) *stack.Proc {
	root, err := stack.Root()
	require.NoError(p.t, err)
	env := map[string]string{
		"STREAMER_CSV_PATH": filepath.Join(root, "deployments", "data", "dcgm_metrics_20250718_134233.csv"),
		"STREAMER_MAX_ROWS": fmt.Sprint(rows),
	}
	p.queueEnv(env, "MQ_WRITER_URL", p.writer)
	return p.start("streamer", env)
}

// queueEnv points an app at the pipeline's queue: NATS, or our queue's
// writer or reader under key.
func (p *pipeline) queueEnv(env map[string]string, key string, proc *stack.Proc) {
	if p.natsURL != "" {
		env["QUEUE_BACKEND"], env["NATS_URL"] = "nats", p.natsURL
		return
	}
	env[key] = proc.URL()
}

func (p *pipeline) collector(extra map[string]string) *stack.Proc {
	env := map[string]string{"POLL_INTERVAL_MS": "20"}
	p.queueEnv(env, "MQ_READER_URLS", p.reader)
	for k, v := range extra {
		env[k] = v
	}
	return p.start("collector", env)
}

func (p *pipeline) count(query string) int {
	p.t.Helper()
	var n int
	require.NoError(p.t, p.pool.QueryRow(context.Background(), query).Scan(&n))
	return n
}

// stored is every stored sample with its series identity (the store keeps
// no message UUID: samples are deduplicated on (series, timestamp)).
const stored = `(SELECT x.ts AS "timestamp", s.gpu_uuid, s.metric_name
    FROM telemetry_samples x JOIN telemetry_series s ON s.id = x.series_id) t`

// settled waits until every streamed row is stored and the queue is empty.
func (p *pipeline) settled(rows int) {
	p.t.Helper()
	require.Eventually(p.t, func() bool {
		return p.count(`SELECT count(*) FROM telemetry_samples`) >= rows && p.count(`SELECT count(*) FROM queue_messages`) == 0
	}, 90*time.Second, 100*time.Millisecond, "pipeline did not settle: telemetry=%d queue=%d",
		p.count(`SELECT count(*) FROM telemetry_samples`), p.count(`SELECT count(*) FROM queue_messages`))
}

func (p *pipeline) checkExactlyOnce(streamStart time.Time) {
	p.t.Helper()
	require.Equal(p.t, csvRows, p.count(`SELECT count(*) FROM telemetry_samples`), "every streamed row stored once")
	require.Equal(p.t, csvRows, p.count(`SELECT count(DISTINCT (gpu_uuid, metric_name, "timestamp")) FROM `+stored), "no duplicate samples")
	require.Equal(p.t, 247, p.count(`SELECT count(*) FROM gpus`), "GPU registry")
	require.Equal(p.t, 247, p.count(`SELECT count(DISTINCT gpu_uuid) FROM `+stored))
	require.Equal(p.t, 0, p.count(`SELECT count(*) FROM queue_messages`), "queue drained")
	require.Equal(p.t, 0, p.count(`SELECT count(*) FROM dead_letters`))
	// Every row carries the time it was streamed, not the CSV's 2025 date.
	var oldest, newest time.Time
	require.NoError(p.t, p.pool.QueryRow(context.Background(),
		`SELECT min("timestamp"), max("timestamp") FROM `+stored).Scan(&oldest, &newest))
	require.False(p.t, oldest.Before(streamStart.Add(-time.Second)), "oldest timestamp %s predates the stream (%s)", oldest, streamStart)
	require.False(p.t, newest.After(time.Now().Add(time.Second)), "timestamp from the future: %s", newest)
	// Each (GPU, metric) pair of the CSV appears exactly once in one pass.
	require.Equal(p.t, csvRows, p.count(`SELECT count(*) FROM (SELECT DISTINCT gpu_uuid, metric_name FROM `+stored+`) s`))
}

func TestStreamOncePersistsEveryRowExactlyOnce(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	p.collector(nil)
	start := time.Now().UTC()
	p.streamer(csvRows)
	p.settled(csvRows)
	p.checkExactlyOnce(start)
}

func TestCollectorKilledMidBatchLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	start := time.Now().UTC()
	// Short leases so the killed collector's batch is redelivered quickly;
	// small batches so the kill lands while batches are in flight.
	slow := map[string]string{"LEASE_SECONDS": "2", "LEASE_MAX": "50", "COLLECTOR_WORKERS": "4"}
	c := p.collector(slow)
	p.streamer(csvRows)
	require.Eventually(t, func() bool { return p.count(`SELECT count(*) FROM telemetry_samples`) >= 400 }, 60*time.Second, 5*time.Millisecond)
	require.NoError(t, c.Signal(syscall.SIGKILL))
	<-c.Done()
	stored := p.count(`SELECT count(*) FROM telemetry_samples`)
	require.Less(t, stored, csvRows, "the kill must land before the collector finished")
	p.collector(slow)
	p.settled(csvRows)
	p.checkExactlyOnce(start)
}

func TestNATSBackendPersistsEveryRowExactlyOnce(t *testing.T) {
	t.Parallel()
	p := newNATSPipeline(t)
	p.collector(nil)
	start := time.Now().UTC()
	p.streamer(csvRows)
	p.settled(csvRows)
	p.checkExactlyOnce(start)
}

// getJSON fetches url from a running app and decodes its 200 answer.
func getJSON[T any](t *testing.T, url string) T {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, body)
	var v T
	require.NoError(t, json.Unmarshal(body, &v), "%s", url)
	return v
}

// TestEveryEndpointAnswersForEveryGPU streams the CSV through the real
// binaries, then asks apigw every time-series question for every GPU: the
// GPU list in one page, the metric names with units, each GPU's latest
// values, a series at 1 m step (rollups) and at 10 s (raw), and the fleet
// summary of every metric.
func TestEveryEndpointAnswersForEveryGPU(t *testing.T) {
	t.Parallel()
	p := newPipeline(t)
	p.collector(nil)
	start := time.Now().UTC()
	p.streamer(csvRows)
	p.settled(csvRows)
	api := p.start("apigw", map[string]string{})
	base := api.URL() + "/api/v1"

	gpus := getJSON[httpapi.GPUList](t, base+"/gpus")
	require.Len(t, gpus.GPUs, 247, "a whole fleet in the default page")
	require.Empty(t, gpus.NextCursor)
	metrics := getJSON[httpapi.MetricList](t, base+"/metrics")
	require.Len(t, metrics.Metrics, 10)
	for _, m := range metrics.Metrics {
		require.Equal(t, 247, m.GPUs, m.Name)
		require.NotEmpty(t, m.Unit, "the shipped dump's fields are known: %s", m.Name)
		sum := getJSON[httpapi.FleetSummary](t, base+"/fleet/summary?metric_name="+m.Name)
		require.Positive(t, sum.Count, m.Name)
		require.LessOrEqual(t, *sum.Min, *sum.P50, m.Name)
		require.LessOrEqual(t, *sum.P95, *sum.Max, m.Name)
	}
	from := start.Truncate(time.Minute).Format(time.RFC3339)
	to := time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
	for _, g := range gpus.GPUs {
		latest := getJSON[httpapi.LatestValues](t, base+"/gpus/"+g.ID+"/latest")
		require.Len(t, latest.Metrics, 10, g.ID)
		rolled := getJSON[httpapi.Series](t, base+"/gpus/"+g.ID+"/series?metric_name=DCGM_FI_DEV_GPU_TEMP&step=1m&start_time="+from+"&end_time="+to)
		require.Equal(t, "rollup", rolled.Source)
		raw := getJSON[httpapi.Series](t, base+"/gpus/"+g.ID+"/series?metric_name=DCGM_FI_DEV_GPU_TEMP&step=10s&start_time="+from+"&end_time="+to)
		require.Equal(t, "raw", raw.Source)
		count := func(s httpapi.Series) (n int) {
			for _, b := range s.Buckets {
				n += b.Count
			}
			return n
		}
		require.Equal(t, 1, count(rolled), "one pass: one temperature sample of %s", g.ID)
		require.Equal(t, 1, count(raw), g.ID)
	}
}
