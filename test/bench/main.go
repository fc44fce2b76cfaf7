// Command bench is `make bench`: it measures, on this machine and in one
// run, how fast the telemetry pipeline is and how close it comes to what
// PostgreSQL itself allows (issue 7).
//
//  1. The floor: the pipeline's own queue and store adapters in this
//     process (pgqueue Writer.Publish of full batches, Reader.Lease and
//     Ack with their refills and batched deletes, the postgres store's
//     WriteBatch with series registration and registry upkeep), no HTTP, so
//     exactly the statements the pipeline runs per message at ideal
//     batching; and, as a second line, the physical limit: COPY of the
//     queue rows and of the samples, DELETE of the queue rows, each
//     committed, batched (floor.go).
//  2. The real pipeline (streamers → mqwriter → mqreader → collectors →
//     PostgreSQL, separate processes over HTTP on loopback) at full speed:
//     after a warm-up, a measured window gives the messages/s persisted
//     (samples the streamer stamped inside the window; the time-series store
//     keeps no ingestion time, so no publish → persisted latency), the
//     backlog at the end, and the CPU seconds per 1,000 messages of
//     every process (process_cpu_seconds_total; the PostgreSQL server's from
//     /proc when it runs here). Each run ends with a drain (streamers
//     stopped, queue emptied) and a check of its books: every message the
//     queue accepted stored exactly once (counts.go); a failed check makes
//     the bench exit non-zero.
//  3. The same pipeline with QUEUE_BACKEND=nats (natsd, an embedded
//     JetStream server, instead of mqwriter and mqreader).
//
// Each is repeated (-runs) in alternating order, so drift of a shared
// machine hits every configuration alike, and reported as median
// [min–max]. Then scaling runs (-scaling streamers×collectors), a latency
// run at half of each backend's sustained rate (STREAMER_RATE pacing),
// and, with -pprof DIR, a profiled run of the PostgreSQL pipeline. It prints
// a table and writes bench-results.json.
//
// Every run gets a fresh database (dropped and created) on DATABASE_URL's
// server or the project's local cluster (.local/pg). Settings of the apps
// (WRITER_MAX_BATCH, LEASE_MAX, COLLECTOR_WORKERS, DB_MAX_CONNS, …) pass
// through from the environment.
//
//	go run ./test/bench                          # the defaults: well under 10 minutes
//	go run ./test/bench -duration 30s -runs 5
//	go run ./test/bench -backends postgres -scaling '' -latency=false -pprof .local/bench/pprof
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/hostload"
	"github.com/gpufleet/telemetry/test/stack"
)

// config is the command line.
type config struct {
	Duration    time.Duration `json:"-"`
	Warmup      time.Duration `json:"-"`
	Runs        int           `json:"runs"`
	Streamers   int           `json:"streamers"`
	Collectors  int           `json:"collectors"`
	Readers     int           `json:"readers"`
	Backends    []string      `json:"backends"`
	Scaling     [][2]int      `json:"scaling"`
	ScalingRuns int           `json:"scaling_runs"`
	Latency     bool          `json:"latency"`
	LatencyLoad float64       `json:"latency_load"`
	LatencyRuns int           `json:"latency_runs"`
	// LatencyRate, when set, is the only measurement: each backend's
	// latency run at this many msgs/s (no floor, main or scaling runs).
	LatencyRate   float64       `json:"latency_rate,omitempty"`
	FloorDuration time.Duration `json:"-"`
	FloorWarmup   time.Duration `json:"-"`
	FloorWorkers  int           `json:"floor_workers"`
	FloorBatch    int           `json:"floor_batch"`
	FloorLease    int           `json:"floor_lease"`
	Out           string        `json:"-"`
	Pprof         string        `json:"-"`
	CSV           string        `json:"csv"`
	DB            string        `json:"database"`
	WorkDir       string        `json:"-"`

	DurationSeconds      float64 `json:"duration_seconds"`
	WarmupSeconds        float64 `json:"warmup_seconds"`
	FloorDurationSeconds float64 `json:"floor_duration_seconds"`
}

// Limits of the flags (the issue's: 1–10 streamers and collectors).
const (
	maxStreamers  = 10
	maxCollectors = 10
	maxReaders    = 16
)

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured window of each pipeline run")
	fs.DurationVar(&c.Warmup, "warmup", 5*time.Second, "unmeasured time before each window")
	fs.IntVar(&c.Runs, "runs", 3, "repetitions of the floor and of each backend's pipeline")
	fs.IntVar(&c.Streamers, "streamers", 4, "streamer processes (1–10)")
	fs.IntVar(&c.Collectors, "collectors", 4, "collector processes (1–10)")
	fs.IntVar(&c.Readers, "readers", 1, "mqreader processes, each owning an equal share of the 256 partitions")
	backends := fs.String("backends", strings.Join(allBackends, ","),
		"pipelines to run: postgres (streaming publish), postgres-request (a request per publish), nats (fsync always, best client), nats-default (JetStream's default durability)")
	scaling := fs.String("scaling", "1x1,4x4,10x10", "streamers×collectors of the scaling runs ('' for none)")
	fs.IntVar(&c.ScalingRuns, "scaling-runs", 1, "repetitions of each scaling point (a point equal to -streamers×-collectors reuses the main runs)")
	fs.BoolVar(&c.Latency, "latency", true, "run each backend -latency-runs times more at -latency-load of its sustained rate and report the latency")
	fs.Float64Var(&c.LatencyLoad, "latency-load", 0.5, "load of the latency run, a fraction of the sustained rate")
	fs.IntVar(&c.LatencyRuns, "latency-runs", 3, "repetitions of each backend's latency run (the report gives their medians)")
	fs.Float64Var(&c.LatencyRate, "latency-rate", 0, "msgs/s: run only each backend's latency run, at this fixed rate (no floor, main or scaling runs; for quick comparisons)")
	fs.DurationVar(&c.FloorDuration, "floor-duration", 5*time.Second, "measured window of each floor run (per method)")
	fs.DurationVar(&c.FloorWarmup, "floor-warmup", time.Second, "unmeasured time before each floor window")
	fs.IntVar(&c.FloorWorkers, "floor-workers", 4, "the floor's publishers and consumers (as many of each), and the physical limit's connections")
	fs.IntVar(&c.FloorBatch, "floor-batch", 1000, "messages per floor publish and physical-limit batch (WRITER_MAX_BATCH's default)")
	fs.IntVar(&c.FloorLease, "floor-lease", 2000, "messages per floor lease (LEASE_MAX's default)")
	fs.StringVar(&c.Out, "out", "bench-results.json", "results file")
	fs.StringVar(&c.Pprof, "pprof", "", "directory: run the PostgreSQL pipeline once more with PPROF=true and save CPU profiles of mqwriter, mqreader, collector and streamer there, and those of its latency run in DIR/latency")
	fs.StringVar(&c.CSV, "csv", stack.ShippedCSV, "DCGM dump the streamers loop over (relative to the module root)")
	fs.StringVar(&c.DB, "db", "telemetry_bench", "database, dropped and created for every run")
	fs.StringVar(&c.WorkDir, "workdir", ".local/bench", "binaries and logs (relative to the module root)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.DurationSeconds, c.WarmupSeconds, c.FloorDurationSeconds = c.Duration.Seconds(), c.Warmup.Seconds(), c.FloorDuration.Seconds()
	for _, b := range strings.Split(*backends, ",") {
		switch b = strings.TrimSpace(b); b {
		case backendPostgres, backendPostgresRequest, backendNATS, backendNATSDefault:
			c.Backends = append(c.Backends, b)
		case "":
		default:
			return c, fmt.Errorf("-backends: unknown backend %q (want %s)", b, strings.Join(allBackends, ", "))
		}
	}
	var err error
	if c.Scaling, err = parseScaling(*scaling); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.Streamers < 1 || c.Streamers > maxStreamers:
		return c, fmt.Errorf("-streamers %d: want 1–%d", c.Streamers, maxStreamers)
	case c.Collectors < 1 || c.Collectors > maxCollectors:
		return c, fmt.Errorf("-collectors %d: want 1–%d", c.Collectors, maxCollectors)
	case c.Readers < 1 || c.Readers > maxReaders:
		return c, fmt.Errorf("-readers %d: want 1–%d", c.Readers, maxReaders)
	case c.Runs < 1, c.ScalingRuns < 1, c.LatencyRuns < 1, c.FloorWorkers < 1, c.FloorBatch < 1, c.FloorLease < 1:
		return c, errors.New("-runs, -scaling-runs, -latency-runs, -floor-workers, -floor-batch and -floor-lease must be at least 1")
	case c.FloorBatch > domain.MaxMessagesPerPublish, c.FloorLease > domain.MaxLeaseMessages:
		return c, fmt.Errorf("-floor-batch %d and -floor-lease %d: at most %d and %d", c.FloorBatch, c.FloorLease, domain.MaxMessagesPerPublish, domain.MaxLeaseMessages)
	case c.Duration < time.Second, c.FloorDuration < time.Second:
		return c, errors.New("-duration and -floor-duration must be at least 1s")
	case c.Warmup < 0, c.FloorWarmup < 0:
		return c, errors.New("-warmup and -floor-warmup must not be negative")
	case c.LatencyLoad <= 0 || c.LatencyLoad > 1:
		return c, errors.New("-latency-load must be in (0, 1]")
	case c.LatencyRate < 0:
		return c, errors.New("-latency-rate must not be negative")
	}
	return c, nil
}

// parseScaling reads "1x1,4x4,10x10".
func parseScaling(s string) ([][2]int, error) {
	var out [][2]int
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		a, b, ok := strings.Cut(strings.ReplaceAll(p, "×", "x"), "x")
		st, err1 := strconv.Atoi(a)
		co, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || st < 1 || st > maxStreamers || co < 1 || co > maxCollectors {
			return nil, fmt.Errorf("-scaling: %q is not streamers×collectors within 1–%d × 1–%d", p, maxStreamers, maxCollectors)
		}
		out = append(out, [2]int{st, co})
	}
	return out, nil
}

func main() { stack.Main("bench", parseFlags, run) }

// run builds the apps, runs every measurement, prints the table and writes
// the results file (also when a measurement failed, with what it had).
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	began := time.Now()
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	work := filepath.Join(root, cfg.WorkDir)
	h := &harness{binDir: filepath.Join(work, "bin"), logDir: filepath.Join(work, "logs"), dbName: cfg.DB}
	h.csvPath = cfg.CSV
	if !filepath.IsAbs(h.csvPath) {
		h.csvPath = filepath.Join(root, h.csvPath)
	}
	if cfg.Pprof != "" && !filepath.IsAbs(cfg.Pprof) {
		cfg.Pprof = filepath.Join(root, cfg.Pprof)
	}
	if err := os.RemoveAll(h.logDir); err != nil {
		return err
	}
	res := newResults(cfg)
	fmt.Fprintf(stdout, "bench: building the apps into %s\n", h.binDir)
	unavailable, err := buildApps(ctx, root, h.binDir, cfg.Backends)
	if err != nil {
		return err
	}
	for b, why := range unavailable {
		res.backend(b).markUnavailable(why)
		fmt.Fprintf(stdout, "bench: %s: unavailable (%s)\n", b, why)
	}
	srv, err := openServer(ctx)
	if err != nil {
		return err
	}
	h.srv = srv
	defer func() {
		if err := srv.close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stop local postgres:", err)
		}
	}()
	res.Machine.PostgresVersion = srv.version(ctx)
	res.Machine.PostgresDurability = srv.durability(ctx)
	src, err := loadPoints(ctx, h.csvPath)
	if err != nil {
		return err
	}
	res.Machine.LoadAverage[0] = hostload.Average()
	runErr := measureAll(ctx, cfg, h, src, res, stdout)
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = srv.drop(dctx, cfg.DB)
	}()
	res.Machine.LoadAverage[1] = hostload.Average()
	res.finish(cfg, time.Since(began))
	if !res.Counts.OK {
		runErr = errors.Join(runErr, fmt.Errorf("counts: %d of %d runs lost or duplicated messages: %s",
			len(res.Counts.Failed), res.Counts.Checked, strings.Join(res.Counts.Failed, "; ")))
	}
	if runErr != nil {
		res.Error = runErr.Error()
	}
	printReport(stdout, res)
	out := cfg.Out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	if err := res.write(out); err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Fprintf(stdout, "\nresults: %s; logs: %s\n", out, h.logDir)
	return runErr
}
