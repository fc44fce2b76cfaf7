// Package e2e runs the real binaries against a real PostgreSQL and checks
// the pipeline's promises end to end: every streamed row is stored exactly
// once, with the time it was streamed, and the queue drains.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/test/freeport"
	"github.com/gpufleet/telemetry/test/pgtest"
	"github.com/gpufleet/telemetry/test/stack"
)

const csvRows = 2470

var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// Race-built: each test then checks its services' logs (see newLogDir).
func run(m *testing.M) int {
	return stack.RunWithBinaries(m, &binDir, stack.RaceFlags, "mqwriter", "mqreader", "collector", "streamer", "natsd", "apigw", "fake-dcgm-exporter")
}

// pipeline is one running set of services over one database.
type pipeline struct {
	*stack.Services
	t      *testing.T
	writer *stack.Proc
	reader *stack.Proc
	// natsURL is set when the queue is NATS JetStream instead of ours.
	natsURL string
}

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	p := &pipeline{Services: stack.NewServices(t, binDir, pgtest.NewDatabase(t)), t: t}
	p.writer = p.Start("mqwriter", map[string]string{})
	p.reader = p.Start("mqreader", map[string]string{"PARTITIONS": "0-255"})
	return p
}

// newNATSPipeline runs the streamer and collector on NATS JetStream (an
// embedded server with fsync on every write) instead of mqwriter/mqreader.
func newNATSPipeline(t *testing.T) *pipeline {
	t.Helper()
	p := &pipeline{Services: stack.NewServices(t, binDir, pgtest.NewDatabase(t)), t: t}
	natsAddr, err := freeport.Addr()
	require.NoError(t, err)
	p.Start("natsd", map[string]string{"NATS_ADDR": natsAddr, "NATS_STORE_DIR": t.TempDir()})
	p.natsURL = "nats://" + natsAddr
	return p
}

func (p *pipeline) streamer(rows int) *stack.Proc {
	csvPath, err := stack.ShippedCSVPath()
	require.NoError(p.t, err)
	env := map[string]string{"STREAMER_CSV_PATH": csvPath, "STREAMER_MAX_ROWS": fmt.Sprint(rows)}
	p.queueEnv(env, "MQ_WRITER_URL", p.writer)
	return p.Start("streamer", env)
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
	return p.Start("collector", env)
}

// stored is every stored sample with its series identity (the store keeps
// no message UUID: samples are deduplicated on (series, timestamp)).
const stored = `(SELECT x.ts AS "timestamp", s.gpu_uuid, s.metric_name
    FROM telemetry_samples x JOIN telemetry_series s ON s.id = x.series_id) t`

// settled waits until every streamed row is stored and the queue is empty.
func (p *pipeline) settled(rows int) {
	p.t.Helper()
	require.EventuallyWithT(p.t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, p.Count(`SELECT count(*) FROM telemetry_samples`), rows, "samples stored")
		assert.Zero(c, p.Count(`SELECT count(*) FROM queue_messages`), "messages left in the queue")
	}, 90*time.Second, 100*time.Millisecond, "pipeline did not settle")
}

// streamOnce runs a collector, streams the shipped CSV once and waits until
// the pipeline settled. It returns when the stream started.
func (p *pipeline) streamOnce() time.Time {
	p.t.Helper()
	p.collector(nil)
	start := time.Now().UTC()
	p.streamer(csvRows)
	p.settled(csvRows)
	return start
}

func (p *pipeline) checkExactlyOnce(streamStart time.Time) {
	p.t.Helper()
	require.Equal(p.t, csvRows, p.Count(`SELECT count(*) FROM telemetry_samples`), "every streamed row stored once")
	require.Equal(p.t, csvRows, p.Count(`SELECT count(DISTINCT (gpu_uuid, metric_name, "timestamp")) FROM `+stored), "no duplicate samples")
	require.Equal(p.t, 247, p.Count(`SELECT count(*) FROM gpus`), "GPU registry")
	require.Equal(p.t, 247, p.Count(`SELECT count(DISTINCT gpu_uuid) FROM `+stored))
	require.Equal(p.t, 0, p.Count(`SELECT count(*) FROM queue_messages`), "queue drained")
	require.Equal(p.t, 0, p.Count(`SELECT count(*) FROM dead_letters`))
	// Every row carries the time it was streamed, not the CSV's 2025 date.
	var oldest, newest time.Time
	require.NoError(p.t, p.Pool.QueryRow(context.Background(),
		`SELECT min("timestamp"), max("timestamp") FROM `+stored).Scan(&oldest, &newest))
	require.False(p.t, oldest.Before(streamStart.Add(-time.Second)), "oldest timestamp %s predates the stream (%s)", oldest, streamStart)
	require.False(p.t, newest.After(time.Now().Add(time.Second)), "timestamp from the future: %s", newest)
	// Each (GPU, metric) pair of the CSV appears exactly once in one pass.
	require.Equal(p.t, csvRows, p.Count(`SELECT count(*) FROM (SELECT DISTINCT gpu_uuid, metric_name FROM `+stored+`) s`))
}

// Streaming the CSV once stores every row exactly once, over our queue
// (mqwriter/mqreader) and over NATS JetStream. Over our queue, apigw then
// answers every endpoint for every GPU of what was stored.
func TestStreamOncePersistsEveryRowExactlyOnce(t *testing.T) {
	t.Parallel()
	t.Run("mq", func(t *testing.T) {
		t.Parallel()
		p := newPipeline(t)
		start := p.streamOnce()
		p.checkExactlyOnce(start)
		t.Run("every endpoint answers for every GPU", func(t *testing.T) { p.checkEveryEndpoint(t, start) })
	})
	t.Run("nats", func(t *testing.T) {
		t.Parallel()
		p := newNATSPipeline(t)
		p.checkExactlyOnce(p.streamOnce())
	})
}

// A collector killed while every one of its workers holds a lease, in the
// middle of writing it, loses and duplicates nothing: exactly the messages
// of those leases are redelivered (after the leases expire), each stored
// once. The test holds an EXCLUSIVE lock on the samples table so that the
// kill lands while each worker waits, lease in hand, for its INSERT; the
// reader's metrics say what was outstanding and what was redelivered.
func TestCollectorKilledMidBatchLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	const workers, leaseMax = 4, 50
	p := newPipeline(t)
	start := time.Now().UTC()
	// Short leases so the killed collector's batches come back quickly;
	// small batches so many are in flight.
	c := p.collector(map[string]string{"LEASE_SECONDS": "2", "LEASE_MAX": fmt.Sprint(leaseMax), "COLLECTOR_WORKERS": fmt.Sprint(workers)})
	p.streamer(csvRows)
	require.Eventually(t, func() bool { return p.Count(`SELECT count(*) FROM telemetry_samples`) >= 400 }, 60*time.Second, 5*time.Millisecond)

	ctx := context.Background()
	lock, err := p.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = lock.Rollback(ctx) }()
	_, err = lock.Exec(ctx, `LOCK TABLE telemetry_samples IN EXCLUSIVE MODE`)
	require.NoError(t, err)
	// Each worker leases, then blocks on its INSERT; blocked, none can ack.
	require.Eventually(t, func() bool { return p.Count(waitingInserts) == workers }, 30*time.Second, 5*time.Millisecond,
		"the collector's %d workers did not all block on their INSERT", workers)
	before := scrape(t, p.reader)
	require.Zero(t, before.expired, "a lease expired before the kill: redeliveries could not be told apart")
	held := before.leased - before.acked
	require.Positive(t, held, "the kill would land with no lease outstanding (leased %v, acked %v)", before.leased, before.acked)
	require.LessOrEqual(t, held, float64(workers*leaseMax), "more messages unacked than the blocked leases hold: some were released before the kill")
	t.Logf("killing the collector with %v messages leased in %d blocked batches (leased %v, acked %v)", held, workers, before.leased, before.acked)
	require.NoError(t, c.Signal(syscall.SIGKILL))
	<-c.Done()
	// The killed workers' INSERTs go on once unlocked: stored, never acked.
	require.NoError(t, lock.Rollback(ctx))
	require.Less(t, p.Count(`SELECT count(*) FROM telemetry_samples`), csvRows, "the kill must land before the collector finished")

	// Long leases now: from here only the killed collector's leases expire.
	p.collector(nil)
	p.settled(csvRows)
	p.checkExactlyOnce(start)
	after := scrape(t, p.reader)
	require.Equal(t, float64(csvRows), after.acked, "every message acked exactly once")
	require.Equal(t, float64(workers), after.expired, "leases expired: exactly the killed collector's, one per worker")
	require.Equal(t, held, after.leased-after.acked, "messages delivered twice: exactly those leased at the kill")
	require.Equal(t, held, after.redelivered-before.redelivered, "messages the reader reloaded for redelivery")
}

// waitingInserts counts the sessions of this database waiting for a lock
// while inserting telemetry.
const waitingInserts = `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO telemetry_samples%'`

// readerMetrics are mqreader's delivery counters.
type readerMetrics struct {
	leased, acked, expired, redelivered float64
}

// scrape reads proc's (mqreader's) delivery counters from its /metrics.
func scrape(t *testing.T, proc *stack.Proc) readerMetrics {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, proc.URL()+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	values := make(map[string]float64)
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		require.NoError(t, err, "metric line %q", line)
		values[name] = v
	}
	m := readerMetrics{
		leased:      values["mqreader_messages_leased_total"],
		acked:       values["mqreader_messages_acked_total"],
		expired:     values["mqreader_leases_expired_total"],
		redelivered: values["mqreader_messages_redelivered_total"],
	}
	_, ok := values["mqreader_messages_leased_total"]
	require.True(t, ok, "no mqreader_messages_leased_total in %s's metrics", proc.Name)
	return m
}

// checkEveryEndpoint asks apigw every time-series question for every GPU
// of a pipeline that streamed the CSV once from start: the GPU list in one
// page, the metric names with units, each GPU's latest values, a series at
// 1 m step (rollups) and at 10 s (raw), and the fleet summary of every
// metric.
func (p *pipeline) checkEveryEndpoint(t *testing.T, start time.Time) {
	api := p.Start("apigw", map[string]string{})
	base := api.URL() + "/api/v1"

	gpus := stack.GetJSON[httpapi.GPUList](t, base+"/gpus")
	require.Len(t, gpus.GPUs, 247, "a whole fleet in the default page")
	require.Empty(t, gpus.NextCursor)
	metrics := stack.GetJSON[httpapi.MetricList](t, base+"/metrics")
	require.Len(t, metrics.Metrics, 10)
	for _, m := range metrics.Metrics {
		require.Equal(t, 247, m.GPUs, m.Name)
		require.NotEmpty(t, m.Unit, "the shipped dump's fields are known: %s", m.Name)
		sum := stack.GetJSON[httpapi.FleetSummary](t, base+"/fleet/summary?metric_name="+m.Name)
		require.Positive(t, sum.Count, m.Name)
		require.LessOrEqual(t, *sum.Min, *sum.P50, m.Name)
		require.LessOrEqual(t, *sum.P95, *sum.Max, m.Name)
	}
	from := start.Truncate(time.Minute).Format(time.RFC3339)
	to := time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
	for _, g := range gpus.GPUs {
		latest := stack.GetJSON[httpapi.LatestValues](t, base+"/gpus/"+g.ID+"/latest")
		require.Len(t, latest.Metrics, 10, g.ID)
		rolled := stack.GetJSON[httpapi.Series](t, base+"/gpus/"+g.ID+"/series?metric_name=DCGM_FI_DEV_GPU_TEMP&step=1m&start_time="+from+"&end_time="+to)
		require.Equal(t, "rollup", rolled.Source)
		raw := stack.GetJSON[httpapi.Series](t, base+"/gpus/"+g.ID+"/series?metric_name=DCGM_FI_DEV_GPU_TEMP&step=10s&start_time="+from+"&end_time="+to)
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
