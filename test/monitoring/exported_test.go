package monitoring_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/pgtest"
	"github.com/gpufleet/telemetry/test/stack"
)

// apps are the services whose /metrics the dashboards and rules read. The
// partition controller is left out: it needs a Kubernetes API server, and
// nothing here reads its metrics.
var apps = []string{"mqwriter", "mqreader", "collector", "streamer", "apigw"}

const csvRows = 2470

var binDir string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	return stack.RunWithBinaries(m, &binDir, nil, apps...)
}

// running is the pipeline of the apps above over one database, after the
// shipped CSV went through it once.
type running struct {
	dsn   string
	pool  *pgxpool.Pool
	procs map[string]*stack.Proc
}

func startPipeline(t *testing.T) *running {
	t.Helper()
	r := &running{dsn: pgtest.NewDatabase(t), procs: map[string]*stack.Proc{}}
	r.pool = pgtest.Pool(t, r.dsn)
	logDir := t.TempDir()
	start := func(name string, env map[string]string) *stack.Proc {
		t.Helper()
		env["DATABASE_URL"] = r.dsn
		r.procs[name] = stack.StartApp(t, binDir, name, logDir, env)
		return r.procs[name]
	}
	// The reader takes its range from a mounted assignment, as in
	// Kubernetes, so it exports mqreader_partition_assignment_stale.
	a, err := domain.Assign("mqreader", 1)
	require.NoError(t, err)
	b, err := json.Marshal(a)
	require.NoError(t, err)
	assignment := filepath.Join(t.TempDir(), domain.AssignmentKey)
	require.NoError(t, os.WriteFile(assignment, b, 0o600))

	csvPath, err := stack.ShippedCSVPath()
	require.NoError(t, err)
	writer := start("mqwriter", map[string]string{})
	reader := start("mqreader", map[string]string{"PARTITIONS_FILE": assignment, "POD_NAME": "mqreader-0"})
	start("collector", map[string]string{"MQ_READER_URLS": reader.URL(), "POLL_INTERVAL_MS": "20"})
	start("apigw", map[string]string{})
	start("streamer", map[string]string{"MQ_WRITER_URL": writer.URL(), "STREAMER_MAX_ROWS": strconv.Itoa(csvRows),
		"STREAMER_CSV_PATH": csvPath})
	require.Eventually(t, func() bool {
		var n int
		err := r.pool.QueryRow(context.Background(), `SELECT count(*) FROM telemetry_samples`).Scan(&n)
		return err == nil && n == csvRows
	}, 2*time.Minute, 100*time.Millisecond, "the CSV was not stored")
	// One API request, so apigw's request histogram has a series.
	resp, err := http.Get(r.procs["apigw"].URL() + "/api/v1/gpus")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return r
}

// sampleName is the metric name of an exposition line.
var sampleName = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]`)

// exported scrapes every app and returns each exported series name (a
// histogram's _bucket, _sum and _count included) with the apps exporting it.
func (r *running) exported(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, name := range apps {
		resp, err := http.Get(r.procs[name].URL() + "/metrics")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, name)
		sc := bufio.NewScanner(strings.NewReader(string(body)))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		n := 0
		for sc.Scan() {
			if m := sampleName.FindStringSubmatch(sc.Text()); m != nil {
				if len(out[m[1]]) == 0 || out[m[1]][len(out[m[1]])-1] != name {
					out[m[1]] = append(out[m[1]], name)
				}
				n++
			}
		}
		require.NoError(t, sc.Err())
		require.Greater(t, n, 20, "%s exported almost nothing", name)
	}
	return out
}

// TestDashboardsAndAlertsOnRealMetricsAndSchema runs the apps, then checks
// every metric the dashboards and rules name against what the apps export,
// and runs every SQL query of the dashboards against the migrated schema.
func TestDashboardsAndAlertsOnRealMetricsAndSchema(t *testing.T) {
	t.Parallel()
	r := startPipeline(t)

	t.Run("every metric named is exported by an app", func(t *testing.T) {
		exported := r.exported(t)
		// Sanity: the scrape sees what each app is known to export.
		for name, app := range map[string]string{
			"mqwriter_messages_published_total":          "mqwriter",
			"mqreader_partition_assignment_stale":        "mqreader",
			"collector_sample_age_seconds_bucket":        "collector",
			"streamer_messages_published_total":          "streamer",
			"apigw_gpu_host_last_seen_timestamp_seconds": "apigw",
		} {
			require.Contains(t, exported[name], app, name)
		}
		used := 0
		for _, q := range promQueries(t) {
			names, err := metricNames(q.text)
			require.NoError(t, err, q.where)
			for _, n := range names {
				used++
				require.NotEmpty(t, exported[n], "%s names %s, which no app exports: %s", q.where, n, q.text)
			}
		}
		require.Greater(t, used, 35)
	})

	t.Run("every SQL query runs and returns rows", func(t *testing.T) {
		ctx := t.Context()
		// Roll the stored minutes up (the collector's own maintenance may
		// hold the lock: retry until this run did the work).
		store := postgres.NewTelemetryStore(r.pool, nil)
		require.Eventually(t, func() bool {
			rep, err := store.Maintain(ctx, time.Now().Add(5*time.Minute))
			return err == nil && rep.Ran
		}, time.Minute, 50*time.Millisecond)
		var rollups int
		require.NoError(t, r.pool.QueryRow(ctx, `SELECT count(*) FROM telemetry_rollups_1m`).Scan(&rollups))
		require.Positive(t, rollups)

		vars := map[string]string{
			"hostname": sqlList(t, r.pool, `SELECT DISTINCT hostname FROM gpus`),
			"gpu":      sqlList(t, r.pool, `SELECT uuid FROM gpus`),
		}
		from, to := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		for _, q := range dashboardQueries(t, postgresType) {
			sql, err := expandSQL(q.text, vars, from, to)
			require.NoError(t, err, q.where)
			rows, err := r.pool.Query(ctx, sql)
			require.NoError(t, err, "%s: %s", q.where, sql)
			n := 0
			for rows.Next() {
				n++
			}
			require.NoError(t, rows.Err(), "%s: %s", q.where, sql)
			require.Positive(t, n, "%s returned no rows: %s", q.where, sql)
		}
	})
}

// sqlList renders a query's text column as Grafana's ${var:sqlstring} of
// the variable with every value selected: 'a','b'.
func sqlList(t *testing.T, pool *pgxpool.Pool, query string) string {
	t.Helper()
	rows, err := pool.Query(t.Context(), query)
	require.NoError(t, err)
	var quoted []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		quoted = append(quoted, "'"+strings.ReplaceAll(s, "'", "''")+"'")
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, quoted)
	return strings.Join(quoted, ",")
}

var (
	sqlVar         = regexp.MustCompile(`\$\{(\w+):sqlstring\}`)
	timeGroupAlias = regexp.MustCompile(`\$__timeGroupAlias\(([\w.]+),\s*\$__interval\)`)
	timeFilter     = regexp.MustCompile(`\$__timeFilter\(([\w.]+)\)`)
	anyMacro       = regexp.MustCompile(`\$\w+|\$\{`)
)

// expandSQL does what Grafana's PostgreSQL data source does to a query
// before sending it, for the variables and macros the dashboards use
// (interval 1m); anything else left over is an error.
func expandSQL(q string, vars map[string]string, from, to time.Time) (string, error) {
	var err error
	q = sqlVar.ReplaceAllStringFunc(q, func(v string) string {
		name := sqlVar.FindStringSubmatch(v)[1]
		val, ok := vars[name]
		if !ok {
			err = fmt.Errorf("unknown variable %s", name)
		}
		return val
	})
	q = timeGroupAlias.ReplaceAllString(q, `floor(extract(epoch from $1)/60)*60 AS "time"`)
	q = timeFilter.ReplaceAllString(q, fmt.Sprintf(`$1 BETWEEN '%s' AND '%s'`,
		from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano)))
	if err == nil && anyMacro.MatchString(q) {
		err = fmt.Errorf("unexpanded macro or variable in %q", q)
	}
	return q, err
}
