package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/stack"
)

// pipelineApps are the binaries of the PostgreSQL pipeline; natsd is built
// apart, so a NATS side that does not build makes only NATS unavailable.
var pipelineApps = []string{"mqwriter", "mqreader", "collector", "streamer"}

func moduleRoot() (string, error) { return stack.Root() }

// buildApps compiles the apps; it returns the backends that cannot run,
// with the reason.
func buildApps(ctx context.Context, root, binDir string, backends []string) (map[string]string, error) {
	if err := stack.Build(ctx, root, binDir, pipelineApps...); err != nil {
		return nil, err
	}
	unavailable := map[string]string{}
	if slices.ContainsFunc(backends, func(b string) bool { return baseBackend(b) == backendNATS }) {
		if err := stack.Build(ctx, root, binDir, "natsd"); err != nil {
			for _, b := range backends {
				if baseBackend(b) == backendNATS {
					unavailable[b] = "natsd does not build: " + firstLine(err.Error())
				}
			}
		}
	}
	return unavailable, nil
}

// loadPoints reads the dump once, for the floor's messages.
func loadPoints(ctx context.Context, path string) (*batchSource, error) {
	src, err := csv.New(path, csv.Options{Once: true, Logger: quietLogger})
	if err != nil {
		return nil, err
	}
	var points []domain.Point
	for {
		p, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		points = append(points, p)
	}
	return newBatchSource(points)
}

// measureAll runs the plan: the alternated main rounds, the scaling points,
// the latency runs, the profiled run.
func measureAll(ctx context.Context, cfg config, h *harness, src *batchSource, res *results, out io.Writer) error {
	seq := 0
	next := func(kind string) string { seq++; return fmt.Sprintf("%02d-%s", seq, kind) }
	main := func(backend string) pipelineConfig {
		return pipelineConfig{Backend: backend, Streamers: cfg.Streamers, Collectors: cfg.Collectors, Readers: readersFor(backend, cfg.Readers),
			warmup: cfg.Warmup, duration: cfg.Duration}
	}
	// runOne runs a pipeline and files it; a NATS pipeline that does not
	// come up marks NATS unavailable instead of failing the benchmark.
	runOne := func(pc pipelineConfig, kind string) (pipelineResult, bool, error) {
		b := res.backend(pc.Backend)
		if !b.Available {
			return pipelineResult{}, false, nil
		}
		pc.name = next(kind + "-" + pc.Backend)
		r, err := h.runPipeline(ctx, pc)
		if err != nil {
			if baseBackend(pc.Backend) == backendNATS && errors.Is(err, errStart) && ctx.Err() == nil {
				why := natsReason(err)
				b.markUnavailable(why)
				fmt.Fprintf(out, "bench: nats: unavailable (%s)\n", why)
				return r, false, nil
			}
			return r, false, fmt.Errorf("%s: %w", pc.name, err)
		}
		fmt.Fprintf(out, "  %-28s %s\n", pc.name, describeRun(r))
		return r, true, nil
	}

	// 1. Main rounds, the order reversed every other round.
	order := append([]string{"floor"}, cfg.Backends...)
	rounds := cfg.Runs
	if cfg.LatencyRate > 0 {
		rounds = 0 // the latency runs only
	}
	for round := range rounds {
		fmt.Fprintf(out, "bench: round %d of %d\n", round+1, cfg.Runs)
		o := slices.Clone(order)
		if round%2 == 1 {
			slices.Reverse(o)
		}
		for _, what := range o {
			if what == "floor" {
				fr, err := h.runFloor(ctx, cfg, src, round, next, out)
				if err != nil {
					return err
				}
				res.Floor.Rounds = append(res.Floor.Rounds, fr)
				continue
			}
			r, ok, err := runOne(main(what), "main")
			if err != nil {
				return err
			}
			if ok {
				res.backend(what).Runs = append(res.backend(what).Runs, r)
			}
		}
	}
	res.summarize()

	// 2. Scaling points.
	for _, sc := range cfg.Scaling {
		if cfg.LatencyRate > 0 {
			break
		}
		for _, b := range cfg.Backends {
			if b == backendPostgresRequest || b == backendNATSDefault {
				continue // scaling is measured for the primary configurations only
			}
			p := scalingPoint{Backend: b, Streamers: sc[0], Collectors: sc[1]}
			if sc[0] == cfg.Streamers && sc[1] == cfg.Collectors {
				p.FromMainRuns = true
				p.Runs = res.backend(b).Runs
			}
			res.Scaling = append(res.Scaling, &p)
		}
	}
	for i := range cfg.ScalingRuns {
		// Alternate the backends' order per repetition.
		pts := slices.Clone(res.Scaling)
		if i%2 == 1 {
			slices.Reverse(pts)
		}
		for _, p := range pts {
			if p.FromMainRuns {
				continue
			}
			pc := main(p.Backend)
			pc.Streamers, pc.Collectors = p.Streamers, p.Collectors
			r, ok, err := runOne(pc, fmt.Sprintf("scale%dx%d", p.Streamers, p.Collectors))
			if err != nil {
				return err
			}
			if ok {
				p.Runs = append(p.Runs, r)
			}
		}
	}

	// 3. Latency at a fraction of each backend's sustained rate, each
	// backend -latency-runs times, the backends' order reversed every other
	// repetition as in the main rounds.
	if cfg.Latency {
		var points []*latencyPoint
		for _, b := range cfg.Backends {
			bs := res.backend(b)
			lp := &latencyPoint{Backend: b, Load: cfg.LatencyLoad, Sustained: bs.Throughput.Median}
			lp.TargetRate = lp.Load * lp.Sustained
			if cfg.LatencyRate > 0 {
				lp.Load, lp.Sustained, lp.TargetRate = 0, 0, cfg.LatencyRate
			}
			if !bs.Available || lp.TargetRate == 0 {
				continue
			}
			lp.Streamers, lp.Rate, lp.PacedRate = pace(lp.TargetRate, cfg.Streamers)
			points = append(points, lp)
		}
		for rep := range cfg.LatencyRuns {
			pts := slices.Clone(points)
			if rep%2 == 1 {
				slices.Reverse(pts)
			}
			for _, lp := range pts {
				pc := main(lp.Backend)
				pc.Rate = lp.Rate
				r, ok, err := runOne(pc, "latency") // never profiled: profiling moves the latency it measures
				if err != nil {
					return err
				}
				if ok {
					lp.Runs = append(lp.Runs, r)
				}
			}
		}
		for _, lp := range points {
			if len(lp.Runs) > 0 {
				lp.summarize()
				res.Latency = append(res.Latency, lp)
			}
		}
	}

	// 4. A profiled run.
	if cfg.Pprof != "" && res.backend(backendPostgres).Available {
		pc := main(backendPostgres)
		pc.pprofDir = cfg.Pprof
		r, ok, err := runOne(pc, "pprof")
		if err != nil {
			return err
		}
		if ok {
			res.Profiled = &r
		}
		// Where the time goes at half rate: the postgres latency run
		// again, profiled, its figures not judged.
		for _, lp := range res.Latency {
			if lp.Backend != backendPostgres {
				continue
			}
			pc := main(backendPostgres)
			pc.Rate, pc.pprofDir = lp.Rate, filepath.Join(cfg.Pprof, "latency")
			if _, _, err := runOne(pc, "pprof-latency"); err != nil {
				return err
			}
		}
	}
	return nil
}

// readersFor is the mqreader count: NATS has none.
func readersFor(backend string, n int) int {
	if baseBackend(backend) == backendNATS {
		return 0
	}
	return n
}

// runFloor measures the floor and the physical limit once each, on a fresh
// database each, in an order that alternates with the round.
func (h *harness) runFloor(ctx context.Context, cfg config, src *batchSource, round int, next func(string) string, out io.Writer) (floorRound, error) {
	methods := []string{floorPipeline, floorCopy}
	if round%2 == 1 {
		slices.Reverse(methods)
	}
	var fr floorRound
	for _, m := range methods {
		name := next("floor-" + m)
		dsn, err := h.srv.fresh(ctx, h.dbName)
		if err != nil {
			return fr, err
		}
		pcfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return fr, fmt.Errorf("floor: %w", err)
		}
		// Publishers and consumers (the store may hold two connections
		// per write), the writer's flushers, the reader's refill, delete
		// and stats, the CPU reading.
		pcfg.MaxConns = int32(3*cfg.FloorWorkers + 8)
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			return fr, fmt.Errorf("floor: %w", err)
		}
		r, err := measureFloor(ctx, pool, h.dbName, src, floorConfig{method: m, workers: cfg.FloorWorkers, batch: cfg.FloorBatch,
			lease: cfg.FloorLease, warmup: cfg.FloorWarmup, duration: cfg.FloorDuration})
		pool.Close()
		if err != nil {
			return fr, fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(out, "  %-28s %s msgs/s (postgres %.3f, harness %.3f CPU s/1k msgs)\n", name, fmtRate(r.MsgsPerSecond), r.PGCPUPer1k, r.ClientCPUPer1k)
		fr.Methods = append(fr.Methods, r)
	}
	return fr, nil
}

// natsReason condenses why the NATS pipeline did not start.
func natsReason(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "not built into this binary yet") {
		return "QUEUE_BACKEND=nats is not wired into the apps yet (apps/internal/backend/nats.go)"
	}
	return firstLine(msg)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// describeRun is a run's one-line progress report.
func describeRun(r pipelineResult) string {
	if r.Persisted == 0 {
		return fmt.Sprintf("nothing persisted in the window (queue accepted %s msgs/s), backlog %d", fmtRate(r.OfferedPerSecond), r.Backlog)
	}
	books := ""
	if c := r.Counts; c != nil && c.OK {
		books = fmt.Sprintf("; counts ok (%d accepted, drained in %.1fs)", c.Accepted, c.DrainSeconds)
		if b := c.Batching; b != nil {
			books += fmt.Sprintf("; msgs per insert %.0f, refill %.0f, delete %.0f, lease call %.0f, store write %.0f",
				b.PerInsert, b.PerRefill, b.PerDelete, b.PerLeaseCall, b.PerWriteBatch)
		}
	} else if c != nil {
		books = "; COUNTS FAILED: " + c.Problem
	}
	return fmt.Sprintf("%s msgs/s persisted (offered %s), p50 %s p99 %s, backlog %d, %.3f CPU s/1k msgs%s",
		fmtRate(r.MsgsPerSecond), fmtRate(r.OfferedPerSecond), fmtSeconds(r.LatencyP50), fmtSeconds(r.LatencyP99),
		r.Backlog, r.CPUPer1k[roleTotal], books)
}
