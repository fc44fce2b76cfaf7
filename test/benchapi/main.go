// Command benchapi measures the REST API's latency over a large telemetry
// table (issue 5's acceptance): it loads -rows synthetic rows shaped like the
// shipped DCGM dump into a dedicated database with COPY, starts the API
// in-process on a loopback listener, and times GET /api/v1/gpus and
// one-hour window pages of random GPUs with a real HTTP client. It prints a
// table, writes bench-api-results.json, and exits 1 when a p99 target is
// missed (unless -enforce=false).
//
//	go run ./test/benchapi                  # 10,000,000 rows, load once
//	go run ./test/benchapi -reuse           # measure again on the loaded table
//	go run ./test/benchapi -rows 1000000 -requests 500
//
// The database is DATABASE_URL's server (the role must be allowed to
// create databases) or the project's local cluster (.local/pg), database
// -db (default benchapi), kept for -reuse unless -drop is given.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/test/hostload"
	"github.com/gpufleet/telemetry/test/pgadmin"
	"github.com/gpufleet/telemetry/test/stack"
)

// config is the command line.
type config struct {
	rows         int64
	gpus         int
	csvPath      string
	db           string
	reuse        bool
	drop         bool
	loadWorkers  int
	rebuildIndex bool
	out          string
	cpuProfile   string
	explain      bool
	enforce      bool
	quietLoad    float64
	quietWait    time.Duration
	measure      measureConfig
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("benchapi", flag.ContinueOnError)
	fs.Int64Var(&c.rows, "rows", 10_000_000, "telemetry rows to load")
	fs.IntVar(&c.gpus, "gpus", 247, "GPUs to spread the rows over (taken from -csv, whole hosts first)")
	fs.StringVar(&c.csvPath, "csv", stack.ShippedCSV, "DCGM dump whose GPUs, labels and values the rows copy")
	fs.StringVar(&c.db, "db", "benchapi", "database to create and load")
	fs.BoolVar(&c.reuse, "reuse", false, "skip loading when the table already holds exactly this dataset")
	fs.BoolVar(&c.drop, "drop", false, "drop the database at the end (default: keep it for -reuse)")
	fs.IntVar(&c.loadWorkers, "load-workers", 2, "parallel COPY connections")
	fs.BoolVar(&c.rebuildIndex, "rebuild-indexes", true, "drop telemetry's indexes for the load and rebuild them after (faster than maintaining them row by row)")
	fs.StringVar(&c.out, "out", "bench-api-results.json", "results file")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the measurement (server and client) to this file")
	fs.BoolVar(&c.explain, "explain", true, "record EXPLAIN ANALYZE of a first and a second page")
	fs.BoolVar(&c.enforce, "enforce", true, "exit 1 when a p99 target is missed")
	fs.Float64Var(&c.quietLoad, "quiet-load", 0, "before measuring, wait until the 1-minute load average is below this (0: do not wait)")
	fs.DurationVar(&c.quietWait, "quiet-wait", 10*time.Minute, "longest wait for -quiet-load")
	m := &c.measure
	fs.IntVar(&m.requests, "requests", 2000, "measured requests per endpoint")
	fs.IntVar(&m.warmup, "warmup", 100, "unmeasured rounds (one request of each kind) before measuring")
	fs.IntVar(&m.follow, "follow", 3, "next_cursor pages followed from every follow-th first page")
	fs.IntVar(&m.streamRequests, "stream-requests", 20, "NDJSON streams of a whole window (0: skip)")
	fs.IntVar(&m.concurrency, "concurrency", 1, "clients sending at once (1 measures latency without queueing)")
	fs.IntVar(&m.limit, "limit", 0, "page size to ask for (0: the API's default, 1000)")
	fs.DurationVar(&m.window, "window", time.Hour, "query window")
	fs.IntVar(&m.checkEvery, "check-every", 10, "decode and check every entry of every n-th page; the rest are checked by entry count and cursor")
	fs.Uint64Var(&m.seed, "seed", 1, "seed of the random GPUs and windows")
	fs.DurationVar(&m.targetGPUs, "target-gpus", 20*time.Millisecond, "p99 target of GET /api/v1/gpus")
	fs.DurationVar(&m.targetPage, "target-page", 50*time.Millisecond, "p99 target of a telemetry page")
	fs.DurationVar(&m.targetLatest, "target-latest", 20*time.Millisecond, "p99 target of GET /api/v1/gpus/{id}/latest")
	fs.DurationVar(&m.targetSeries, "target-series", 50*time.Millisecond, "p99 target of a 24 h series at 1 m step")
	fs.DurationVar(&m.targetFleet, "target-fleet", 100*time.Millisecond, "p99 target of GET /api/v1/fleet/summary")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case m.requests < 1, m.concurrency < 1, c.loadWorkers < 1:
		return c, errors.New("-requests, -concurrency and -load-workers must be at least 1")
	case m.window < time.Second:
		return c, errors.New("-window must be at least 1s")
	case m.limit < 0 || m.limit > httpapi.MaxLimit:
		return c, fmt.Errorf("-limit must be 0 to %d", httpapi.MaxLimit)
	}
	return c, nil
}

func main() { stack.Main("benchapi", parseFlags, run) }

// run prepares the database, benchmarks on it, and drops it when asked.
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	srv, err := openServer(ctx)
	if err != nil {
		return err
	}
	dsn, err := srv.ensureDatabase(ctx, cfg.db)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database %s\n", pgadmin.Redact(dsn))
	benchErr := runOn(ctx, cfg, dsn, srv.dataDir, stdout)
	if cfg.drop {
		dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := srv.dropDatabase(dropCtx, cfg.db); err != nil {
			return errors.Join(benchErr, err)
		}
		fmt.Fprintf(stdout, "dropped database %s\n", cfg.db)
	}
	return benchErr
}

// results is the JSON file.
type results struct {
	GeneratedAt     time.Time     `json:"generated_at"`
	Database        string        `json:"database"`
	PostgresVersion string        `json:"postgres_version"`
	GoVersion       string        `json:"go_version"`
	NumCPU          int           `json:"num_cpu"`
	GOMAXPROCS      int           `json:"gomaxprocs"`
	Dataset         datasetInfo   `json:"dataset"`
	Load            loadStats     `json:"load"`
	Sizes           tableSizes    `json:"sizes"`
	Measure         measureParams `json:"measure"`
	Endpoints       []result      `json:"endpoints"`
	Plans           *plans        `json:"plans,omitempty"`
	TargetsMet      bool          `json:"targets_met"`
	// LoadAverage is /proc/loadavg (1, 5, 15 min) before and after the
	// measurement: the machine is shared, and its load explains tails.
	LoadAverage [2]string `json:"load_average_before_after"`
}

type datasetInfo struct {
	Rows             int64     `json:"rows"`
	RowsRequested    int64     `json:"rows_requested"`
	GPUs             int       `json:"gpus"`
	RowsPerTimestamp int64     `json:"rows_per_timestamp"`
	Timestamps       int64     `json:"timestamps"`
	Oldest           time.Time `json:"oldest"`
	Newest           time.Time `json:"newest"`
	WindowRows       int64     `json:"rows_per_window"`
	DiskAvailBytes   uint64    `json:"disk_available_bytes,omitempty"`
}

type measureParams struct {
	Requests       int     `json:"requests_per_endpoint"`
	Warmup         int     `json:"warmup_rounds"`
	Follow         int     `json:"pages_followed"`
	StreamRequests int     `json:"stream_requests"`
	Concurrency    int     `json:"concurrency"`
	PageLimit      int     `json:"page_limit"`
	WindowSeconds  int64   `json:"window_seconds"`
	Seed           uint64  `json:"seed"`
	Client         string  `json:"client"`
	Server         string  `json:"server"`
	TargetGPUsMS   float64 `json:"target_gpus_p99_ms"`
	TargetPageMS   float64 `json:"target_page_p99_ms"`
	// WallSeconds, ProcessCPUSeconds and GCCycles cover the measurement
	// (server and client share the process).
	WallSeconds       float64 `json:"wall_seconds"`
	ProcessCPUSeconds float64 `json:"process_cpu_seconds"`
	GCCycles          uint32  `json:"gc_cycles"`
}

// runOn loads (or reuses) the dataset in database dsn, measures, reports.
// dataDir is the local cluster's folder for the disk check ("" skips it).
func runOn(ctx context.Context, cfg config, dsn, dataDir string, stdout io.Writer) error {
	gpus, err := readTemplates(ctx, cfg.csvPath, cfg.gpus)
	if err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, dsn, postgres.PoolOptions{MaxConns: 16, ApplicationName: "benchapi"})
	if err != nil {
		return err
	}
	defer pool.Close()
	createLegacy, err := legacyTable()
	if err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, createLegacy); err != nil {
		return fmt.Errorf("create telemetry_legacy: %w", err)
	}
	// An interrupted load may have left the table without its indexes.
	if err := restoreIndexes(ctx, dsn, stdout); err != nil {
		return err
	}

	res := results{GeneratedAt: time.Now().UTC(), Database: pgadmin.Redact(dsn), GoVersion: runtime.Version(),
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if err := pool.QueryRow(ctx, sqlServerVersion).Scan(&res.PostgresVersion); err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	d, err := prepare(ctx, cfg, pool, dsn, dataDir, gpus, stdout, &res)
	if err != nil {
		return err
	}
	span := int64(cfg.measure.window / time.Second)
	res.Dataset = datasetInfo{Rows: d.rows, RowsRequested: cfg.rows, GPUs: len(gpus), RowsPerTimestamp: d.perTS(),
		Timestamps: d.timestamps, Oldest: d.oldest, Newest: d.newest(), DiskAvailBytes: res.Dataset.DiskAvailBytes,
		WindowRows: d.windowRows(d.windowFor(0, 0, span))}
	if res.Sizes, err = sizes(ctx, pool, d.rows); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "today's wide table (telemetry_legacy): %.2f GB (heap %.2f GB, indexes %.2f GB), %.1f bytes/sample\n",
		float64(res.Sizes.TotalBytes)/1e9, float64(res.Sizes.HeapBytes)/1e9, float64(res.Sizes.IndexBytes)/1e9, res.Sizes.BytesPerRow)
	fmt.Fprintf(stdout, "time-series store: samples %.2f GB (indexes %.2f GB) + series %.1f MB = %.1f bytes/sample (%.2f of today's); rollups %.1f MB\n",
		float64(res.Sizes.SamplesBytes)/1e9, float64(res.Sizes.SamplesIndexBytes)/1e9, float64(res.Sizes.SeriesBytes)/1e6,
		res.Sizes.BytesPerSample, res.Sizes.NewToOldSizeRatio, float64(res.Sizes.RollupBytes)/1e6)

	m := cfg.measure
	limit := int64(m.limit)
	if limit == 0 {
		limit = httpapi.DefaultLimit
	}
	res.Measure = measureParams{Requests: m.requests, Warmup: m.warmup, Follow: m.follow, StreamRequests: m.streamRequests,
		Concurrency: m.concurrency, PageLimit: int(limit), WindowSeconds: min(span, d.timestamps-1), Seed: m.seed,
		Client:       "net/http on loopback, keep-alive, identity encoding unless noted; time from request to last body byte",
		Server:       "httpapi.New over postgres.TelemetryStore (pool of 16), httptest listener on 127.0.0.1, JSON access log to io.Discard",
		TargetGPUsMS: ms(m.targetGPUs), TargetPageMS: ms(m.targetPage)}

	if cfg.explain {
		p, err := explain(ctx, pool, d, span, limit, m.seed)
		if err != nil {
			return err
		}
		res.Plans = &p
		fmt.Fprintf(stdout, "EXPLAIN ANALYZE, first page of a random window:\n%s\n", p.FirstPage)
	}

	store := postgres.NewTelemetryStoreWith(pool, nil, postgres.Options{
		RegistryResolution: postgres.DefaultRegistryResolution, SeriesResolution: postgres.DefaultSeriesResolution})
	api := httpapi.New(store, httpapi.Options{
		// The access log is formatted as in apigw, then discarded.
		Logger:     slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Registerer: prometheus.NewRegistry(),
	})
	ts := httptest.NewServer(api)
	defer ts.Close()

	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Fprintf(stdout, "measuring on %s: %d requests per endpoint, %d warm-up, concurrency %d\n",
		ts.URL, m.requests, m.warmup, m.concurrency)
	if cfg.quietLoad > 0 {
		waitQuiet(ctx, stdout, cfg.quietLoad, cfg.quietWait)
	}
	res.LoadAverage[0] = hostload.Average()
	var gcBefore, gcAfter runtime.MemStats
	runtime.ReadMemStats(&gcBefore)
	cpuBefore, start := processCPU(), time.Now()
	measured, err := measure(ctx, m, d, ts.URL, store)
	if err != nil {
		return err
	}
	res.Measure.WallSeconds = time.Since(start).Seconds()
	res.Measure.ProcessCPUSeconds = (processCPU() - cpuBefore).Seconds()
	runtime.ReadMemStats(&gcAfter)
	res.Measure.GCCycles = gcAfter.NumGC - gcBefore.NumGC
	res.LoadAverage[1] = hostload.Average()
	res.Endpoints = summarize(measured, m)
	res.TargetsMet = true
	for _, r := range res.Endpoints {
		if r.Pass != nil && !*r.Pass {
			res.TargetsMet = false
		}
	}
	printTable(stdout, res)
	if err := writeJSON(cfg.out, res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", cfg.out)
	if cfg.enforce && !res.TargetsMet {
		return errTargetsMissed
	}
	return nil
}

// prepare reuses the loaded table when -reuse allows, or loads the
// dataset, recording what it did in res.
func prepare(ctx context.Context, cfg config, pool *pgxpool.Pool, dsn, dataDir string, gpus []gpuTemplate,
	stdout io.Writer, res *results,
) (*dataset, error) {
	if cfg.reuse {
		d, why, err := existing(ctx, pool, gpus, cfg.rows)
		if err != nil {
			return nil, err
		}
		if d != nil {
			res.Load = loadStats{Reused: true}
			fmt.Fprintf(stdout, "reusing %d loaded rows\n", d.rows)
			return d, nil
		}
		fmt.Fprintf(stdout, "cannot reuse the table (%s): loading\n", why)
	}
	rows := cfg.rows
	if dataDir != "" {
		// The table is about to be truncated: its space counts as free.
		before, err := sizes(ctx, pool, 0)
		if err != nil {
			return nil, err
		}
		var perTS int64
		for _, g := range gpus {
			perTS += int64(len(g.samples))
		}
		fit, avail, err := fitRows(dataDir, rows, perTS, before.TotalBytes)
		if err != nil {
			return nil, err
		}
		res.Dataset.DiskAvailBytes = avail
		if fit < rows {
			fmt.Fprintf(stdout, "WARNING: %.1f GB free for %s holds about %d rows, not %d: loading %d\n",
				float64(avail)/1e9, dataDir, fit, rows, fit)
			rows = fit
		}
	}
	d, err := newDataset(gpus, rows, time.Now())
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "loading %d rows: %d GPUs x %d metrics per second, %d s back from %s\n",
		d.rows, len(gpus), d.perTS()/int64(len(gpus)), d.timestamps, d.newest().Format(time.RFC3339))
	st, err := load(ctx, pool, dsn, d, loadOptions{workers: cfg.loadWorkers, rebuildIndex: cfg.rebuildIndex, progress: stdout})
	if err != nil {
		return nil, err
	}
	res.Load = st
	fmt.Fprintf(stdout, "loaded %d rows in %.1f s: %.0f rows/s overall (COPY %.1f s at %.0f rows/s, indexes %.1f s, vacuum analyze %.1f s, time-series fill %.1f s, rollups %.1f s)\n",
		d.rows, st.TotalSeconds, st.RowsPerSecond, st.CopySeconds, st.CopyRowsPerSecond, st.IndexSeconds, st.VacuumSeconds, st.SeriesSeconds, st.RollupSeconds)
	return d, nil
}

var errTargetsMissed = errors.New("a p99 latency target was missed (see the table)")

func printTable(w io.Writer, res results) {
	fmt.Fprintf(w, "\n%d rows, %d GPUs; window %d s = %d rows per GPU; page limit %d; load average %s -> %s on %d CPUs\n",
		res.Dataset.Rows, res.Dataset.GPUs, res.Measure.WindowSeconds, res.Dataset.WindowRows, res.Measure.PageLimit,
		res.LoadAverage[0], res.LoadAverage[1], res.NumCPU)
	fmt.Fprintf(w, "measurement: %.1f s wall, %.1f s CPU in this process (server and client), %d GC cycles\n",
		res.Measure.WallSeconds, res.Measure.ProcessCPUSeconds, res.Measure.GCCycles)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "endpoint\tn\tmedian ms\tp90 ms\tp99 ms\tmax ms\tavg KB\tentries\ttarget p99\t")
	for _, r := range res.Endpoints {
		target := "-"
		if r.Pass != nil {
			verdict := "PASS"
			if !*r.Pass {
				verdict = "FAIL"
			}
			target = fmt.Sprintf("< %g ms %s", r.TargetP99MS, verdict)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%.0f\t%s\t\n",
			r.Name, r.Requests, r.MedianMS, r.P90MS, r.P99MS, r.MaxMS, r.AvgBytes/1024, r.AvgEntries, target)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// waitQuiet waits up to longest for the 1-minute load average to drop below
// limit: on a shared machine, other work's CPU demand shows up as latency.
func waitQuiet(ctx context.Context, out io.Writer, limit float64, longest time.Duration) {
	deadline := time.Now().Add(longest)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		f := strings.Fields(hostload.Average())
		if len(f) == 0 {
			return
		}
		var load float64
		if _, err := fmt.Sscan(f[0], &load); err != nil || load < limit {
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(out, "load average still %.2f after %s: measuring anyway\n", load, longest)
			return
		}
		fmt.Fprintf(out, "load average %.2f >= %.2f: waiting\n", load, limit)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// processCPU is the user and system CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
