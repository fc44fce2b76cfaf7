//go:build faults

package faults

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/migrations"
	"github.com/gpufleet/telemetry/test/freeport"
	"github.com/gpufleet/telemetry/test/pglocal"
	"github.com/gpufleet/telemetry/test/stack"
)

// readyWithin bounds a service's start-up, migrations included.
const readyWithin = 30 * time.Second

// system is one scenario's deployment: a fresh database on the suite's
// cluster and the services started on it. Everything in it is owned by the
// test goroutine; only the publisher (see publisher.go) runs beside it.
type system struct {
	t      *testing.T
	dsn    string
	pool   *pgxpool.Pool
	logDir string
	svcs   []*service // every service started, in start order
	// bins holds the binaries it starts: binDir (race-built) unless the
	// scenario measures memory (plainDir).
	bins string
	http *http.Client
	// noWait starts services without waiting for /readyz (the database is
	// down on purpose).
	noWait bool
}

// service is one app instance that may be killed and started again on the
// same address, so its peers find it without reconfiguration.
type service struct {
	name string // log file and collector id, e.g. "collector-1"
	app  string // binary under the system's bins
	addr string
	env  map[string]string

	proc   *stack.Proc        // the current process; nil when stopped
	starts int                // processes started so far
	totals map[string]float64 // counters of its earlier processes, scraped just before they ended
	lives  []lifetime         // each process's start and end, for overlap checks
}

// lifetime is when one process of a service ran (end zero: still running).
type lifetime struct {
	start, end time.Time
	label      string             // what it served, e.g. a reader's range
	last       map[string]float64 // its counters, scraped just before it ended
}

func newSystem(t *testing.T) *system {
	t.Helper()
	return newSystemOn(t, pg, pg.URL)
}

// newSystemOn is newSystem on cluster c (where the database is created)
// with the services' DATABASE_URL from dsnOf (a failover pair's
// multi-host URL).
func newSystemOn(t *testing.T, c pglocal.Cluster, dsnOf func(db string) string) *system {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "f_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	require.NoError(t, c.EnsureDatabase(ctx, name))
	dsn := dsnOf(name)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	_, err = migrations.Up(ctx, conn)
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)

	logDir, err := os.MkdirTemp("", "faults-log-")
	require.NoError(t, err)
	s := &system{t: t, dsn: dsn, pool: pool, logDir: logDir, http: &http.Client{Timeout: 5 * time.Second}, bins: binDir}
	t.Cleanup(func() {
		for i := len(s.svcs) - 1; i >= 0; i-- {
			if p := s.svcs[i].proc; p != nil {
				_ = p.Stop(20 * time.Second)
			}
		}
		pool.Close()
		reports, err := stack.RaceReports(logDir)
		if err != nil {
			t.Errorf("read service logs: %v", err)
		}
		for _, r := range reports {
			t.Errorf("data race in a service: %s", r)
		}
		if t.Failed() {
			t.Logf("service logs kept in %s", logDir)
		} else {
			_ = os.RemoveAll(logDir)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if conn, err := pgx.Connect(ctx, dsnOf("postgres")); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = conn.Close(ctx)
		}
	})
	return s
}

// start runs a new service and waits until it is ready.
func (s *system) start(name, app string, env map[string]string) *service {
	s.t.Helper()
	addr, err := freeport.Addr()
	require.NoError(s.t, err)
	svc := &service{name: name, app: app, addr: addr, env: env, totals: map[string]float64{}}
	s.svcs = append(s.svcs, svc)
	if s.noWait {
		s.launchNoWait(svc, "")
		return svc
	}
	s.launch(svc, "")
	return svc
}

// launch starts svc's next process with its env (plus overrides) and waits
// for /readyz.
func (s *system) launch(svc *service, label string) {
	s.t.Helper()
	s.launchNoWait(svc, label)
	ctx, cancel := context.WithTimeout(context.Background(), readyWithin)
	defer cancel()
	require.NoError(s.t, svc.proc.WaitReady(ctx, "/readyz"))
}

// launchNoWait starts svc's next process without waiting for it.
func (s *system) launchNoWait(svc *service, label string) {
	s.t.Helper()
	require.Nil(s.t, svc.proc, "%s is already running", svc.name)
	env := map[string]string{"DATABASE_URL": s.dsn, "LOG_LEVEL": "warn"}
	maps.Copy(env, svc.env)
	p, err := stack.Start(filepath.Join(s.bins, svc.app), svc.name, svc.addr, s.logDir, env)
	require.NoError(s.t, err)
	svc.proc = p
	svc.starts++
	svc.lives = append(svc.lives, lifetime{start: time.Now(), label: label})
}

// kill scrapes svc's counters, then SIGKILLs it and waits for the exit.
func (s *system) kill(svc *service) {
	s.t.Helper()
	require.NotNil(s.t, svc.proc, "%s is not running", svc.name)
	s.keepCounters(svc)
	svc.proc.Kill()
	s.ended(svc)
}

// term scrapes svc's counters, sends SIGTERM and waits up to within for the
// exit; it returns how long the exit took and its status.
func (s *system) term(svc *service, within time.Duration) (time.Duration, error) {
	s.t.Helper()
	require.NotNil(s.t, svc.proc, "%s is not running", svc.name)
	s.keepCounters(svc)
	start := time.Now()
	require.NoError(s.t, svc.proc.Signal(syscall.SIGTERM))
	select {
	case <-svc.proc.Done():
	case <-time.After(within):
		log := svc.proc.Log
		svc.proc.Kill()
		s.ended(svc)
		s.t.Fatalf("%s did not exit within %s of SIGTERM; log %s", svc.name, within, log)
	}
	took := time.Since(start)
	err := svc.proc.Err()
	s.ended(svc)
	return took, err
}

// termAll SIGTERMs every svc at once and waits up to within for all of
// them; it returns their exit statuses.
func (s *system) termAll(svcs []*service, within time.Duration) []error {
	s.t.Helper()
	for _, svc := range svcs {
		require.NotNil(s.t, svc.proc, "%s is not running", svc.name)
		s.keepCounters(svc)
		require.NoError(s.t, svc.proc.Signal(syscall.SIGTERM))
	}
	deadline := time.After(within)
	errs := make([]error, len(svcs))
	for i, svc := range svcs {
		select {
		case <-svc.proc.Done():
		case <-deadline:
			s.t.Fatalf("%s did not exit within %s of SIGTERM; log %s", svc.name, within, svc.proc.Log)
		}
		errs[i] = svc.proc.Err()
		s.ended(svc)
	}
	return errs
}

func (s *system) ended(svc *service) {
	svc.lives[len(svc.lives)-1].end = time.Now()
	svc.proc = nil
}

// keepCounters adds svc's current counters to its totals, so counts of a
// process about to end still reach the figures (less what it counts in its
// last moments).
func (s *system) keepCounters(svc *service) {
	m, err := s.scrape(svc)
	if err != nil {
		s.t.Logf("scrape %s before it ends: %v", svc.name, err)
		return
	}
	for k, v := range m {
		svc.totals[k] += v
	}
	svc.lives[len(svc.lives)-1].last = m
}

// counter is svc's counter: its earlier processes' plus the running one's.
func (s *system) counter(svc *service, name string) float64 {
	total := svc.totals[name]
	if svc.proc != nil {
		if m, err := s.scrape(svc); err == nil {
			total += m[name]
		}
	}
	return total
}

// sum is counter over every service of app.
func (s *system) sum(app, name string) float64 {
	var total float64
	for _, svc := range s.svcs {
		if svc.app == app {
			total += s.counter(svc, name)
		}
	}
	return total
}

// scrape reads svc's /metrics into metric name → sum over its label sets.
func (s *system) scrape(svc *service) (map[string]float64, error) {
	resp, err := s.http.Get("http://" + svc.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics sums the samples of Prometheus text exposition by metric name.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			rest = rest[strings.LastIndexByte(rest, '}')+1:]
		}
		fields := strings.Fields(rest) // value [timestamp]
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[name] += v
	}
	return out, sc.Err()
}

// status GETs path on svc and returns the status code (0 when unreachable).
func (s *system) status(svc *service, path string) int {
	resp, err := s.http.Get("http://" + svc.addr + path)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// allReady reports whether every one of svcs answers /readyz with 200.
func (s *system) allReady(svcs []*service) bool {
	for _, svc := range svcs {
		if s.status(svc, "/readyz") != http.StatusOK {
			return false
		}
	}
	return true
}

// rssKiB reads the resident set size of svc's process from /proc.
func rssKiB(t *testing.T, svc *service) int {
	t.Helper()
	require.NotNil(t, svc.proc)
	return memKiB(t, svc, "VmRSS")
}

// count runs a query returning one integer.
func (s *system) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(s.t, s.pool.QueryRow(ctx, query, args...).Scan(&n))
	return n
}

// Service constructors with the settings every scenario shares.

func (s *system) writer(env map[string]string) *service {
	return s.start("mqwriter", "mqwriter", with(map[string]string{}, env))
}

func (s *system) reader(name, partitions string, extra map[string]string) *service {
	svc := s.start(name, "mqreader", with(map[string]string{
		"PARTITIONS":              partitions,
		"READER_DRAIN_TIMEOUT_MS": "10000",
	}, extra))
	svc.lives[0].label = partitions
	return svc
}

func (s *system) collector(name string, readers []*service, extra map[string]string) *service {
	urls := make([]string, len(readers))
	for i, r := range readers {
		urls[i] = "http://" + r.addr
	}
	return s.start(name, "collector", with(map[string]string{
		"MQ_READER_URLS":    strings.Join(urls, ","),
		"COLLECTOR_ID":      name,
		"POLL_INTERVAL_MS":  "20",
		"LEASE_SECONDS":     "5",
		"LEASE_MAX":         "200",
		"COLLECTOR_WORKERS": "2",
	}, extra))
}

func (s *system) apigw() *service {
	return s.start("apigw", "apigw", map[string]string{})
}

// with returns base with extra's entries added (extra wins).
func with(base, extra map[string]string) map[string]string {
	maps.Copy(base, extra)
	return base
}
