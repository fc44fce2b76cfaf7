package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

var quietLogger = slog.New(slog.DiscardHandler)

// Targets of issues 7 and 16 (goals to report, not assertions).
const (
	targetPostgresOverNATS = 1.0
	// Stamp→persisted of the streaming pipeline at -latency-load of its
	// sustained rate, seconds (issue 16); other backends are reported.
	targetLatencyP50        = 0.050
	targetLatencyP99        = 0.250
	targetStreamOverRequest = 2.0
	targetStreamOverFloor   = 0.35
)

// results is bench-results.json.
type results struct {
	GeneratedAt    time.Time                  `json:"generated_at"`
	ElapsedSeconds float64                    `json:"elapsed_seconds"`
	Machine        machine                    `json:"machine"`
	Config         config                     `json:"config"`
	Floor          floorSection               `json:"floor"`
	Backends       map[string]*backendSection `json:"pipelines"`
	Ratios         ratios                     `json:"ratios"`
	Scaling        []*scalingPoint            `json:"scaling"`
	Latency        []*latencyPoint            `json:"latency"`
	Profiled       *pipelineResult            `json:"profiled_run,omitempty"`
	Targets        []target                   `json:"targets"`
	Counts         countsSummary              `json:"counts"`
	Notes          []string                   `json:"notes"`
	Error          string                     `json:"error,omitempty"`
}

type machine struct {
	NumCPU          int    `json:"num_cpu"`
	GOMAXPROCS      int    `json:"gomaxprocs"`
	GoVersion       string `json:"go_version"`
	PostgresVersion string `json:"postgres_version"`
	// PostgresDurability is fsync, synchronous_commit, wal_sync_method and
	// the like: what a commit costs depends on them.
	PostgresDurability map[string]string `json:"postgres_durability"`
	// LoadAverage is /proc/loadavg before and after: the machine may be
	// shared, and its load explains noisy figures.
	LoadAverage [2]string `json:"load_average_before_after"`
}

// floorSection is the two floors of floor.go, each round measuring both.
type floorSection struct {
	Rounds []floorRound `json:"rounds"`
	// Floor is the floor proper (method "pipeline"): the pipeline's own
	// statements, through its adapters, at ideal batching.
	Floor summary `json:"msgs_per_second"`
	// PhysicalLimit is the COPY-only line (method "copy").
	PhysicalLimit summary `json:"physical_limit_msgs_per_second"`
	// CPUPer1k is each method's CPU seconds per 1,000 messages: the
	// server's backends ("postgres") and the harness ("harness": for the
	// floor, the adapters' and the decoding's share of the apps' work).
	CPUPer1k map[string]map[string]summary `json:"cpu_seconds_per_1k_msgs"`
}

type floorRound struct {
	Methods []floorResult `json:"methods"`
}

// method is the round's measurement of method m, if any.
func (fr floorRound) method(m string) (floorResult, bool) {
	for _, r := range fr.Methods {
		if r.Method == m {
			return r, true
		}
	}
	return floorResult{}, false
}

type backendSection struct {
	Available   bool               `json:"available"`
	Unavailable string             `json:"unavailable,omitempty"`
	Runs        []pipelineResult   `json:"runs"`
	Throughput  summary            `json:"msgs_per_second"`
	Offered     summary            `json:"offered_per_second"`
	P50         summary            `json:"latency_p50_seconds"`
	P99         summary            `json:"latency_p99_seconds"`
	Backlog     summary            `json:"backlog"`
	CPUPer1k    map[string]summary `json:"cpu_seconds_per_1k_msgs"`
}

func (b *backendSection) markUnavailable(why string) {
	b.Available, b.Unavailable = false, why
}

// ratios are medians of the same run. "postgres" is the streaming
// pipeline; "nats" is JetStream at equal durability (fsync always); the
// floor is the floor proper (the pipeline's statements), not the COPY-only
// physical limit.
type ratios struct {
	StreamOverRequest       float64 `json:"stream_over_request,omitempty"`
	StreamOverFloor         float64 `json:"stream_over_floor,omitempty"`
	StreamOverPhysicalLimit float64 `json:"stream_over_physical_limit,omitempty"`
	FloorOverPhysicalLimit  float64 `json:"floor_over_physical_limit,omitempty"`
	NATSOverFloor           float64 `json:"nats_over_floor,omitempty"`
	PostgresOverNATSDurable float64 `json:"postgres_over_nats_durable,omitempty"`
	PostgresOverNATSDefault float64 `json:"postgres_over_nats_default,omitempty"`
}

type scalingPoint struct {
	Backend      string           `json:"backend"`
	Streamers    int              `json:"streamers"`
	Collectors   int              `json:"collectors"`
	FromMainRuns bool             `json:"from_main_runs"`
	Throughput   summary          `json:"msgs_per_second"`
	P99          summary          `json:"latency_p99_seconds"`
	Runs         []pipelineResult `json:"runs,omitempty"`
}

type latencyPoint struct {
	Backend    string  `json:"backend"`
	Load       float64 `json:"load"`
	Sustained  float64 `json:"sustained_msgs_per_second"`
	TargetRate float64 `json:"target_msgs_per_second"`
	Streamers  int     `json:"streamers"`
	Rate       int     `json:"rate_per_streamer"`
	PacedRate  float64 `json:"paced_msgs_per_second"`
	// P50 and P99 (stamp → persisted) and the publish → acknowledged
	// quantiles summarise the runs that stored something: median [min–max].
	P50    summary `json:"latency_p50_seconds"`
	P99    summary `json:"latency_p99_seconds"`
	AckP50 summary `json:"publish_to_ack_p50_seconds"`
	AckP99 summary `json:"publish_to_ack_p99_seconds"`
	// Result is the run of the median p50, whose steps (WHERE THE TIME
	// GOES) the report shows; Runs are all of them.
	Result *pipelineResult  `json:"result"`
	Runs   []pipelineResult `json:"runs"`
}

// summarize sets the point's quantile summaries and its median run.
func (lp *latencyPoint) summarize() {
	var stored []pipelineResult
	for _, r := range lp.Runs {
		if r.Persisted > 0 {
			stored = append(stored, r)
		}
	}
	pick := func(f func(pipelineResult) float64) summary {
		xs := make([]float64, len(stored))
		for i, r := range stored {
			xs[i] = f(r)
		}
		return summarize(xs)
	}
	lp.P50 = pick(func(r pipelineResult) float64 { return r.LatencyP50 })
	lp.P99 = pick(func(r pipelineResult) float64 { return r.LatencyP99 })
	lp.AckP50 = pick(func(r pipelineResult) float64 { return r.AckP50 })
	lp.AckP99 = pick(func(r pipelineResult) float64 { return r.AckP99 })
	lp.Result = nil
	if len(stored) == 0 {
		if len(lp.Runs) > 0 {
			lp.Result = &lp.Runs[0]
		}
		return
	}
	slices.SortStableFunc(stored, func(a, b pipelineResult) int { return cmp.Compare(a.LatencyP50, b.LatencyP50) })
	lp.Result = &stored[(len(stored)-1)/2]
}

// label says what the point's rate is: a share of the sustained rate, or
// the fixed rate of -latency-rate.
func (lp *latencyPoint) label() string {
	if lp.Sustained == 0 {
		return "at a fixed " + fmtRate(lp.TargetRate) + " msgs/s"
	}
	return fmt.Sprintf("at %.0f%% of %s", lp.Load*100, fmtRate(lp.Sustained))
}

// countsSummary is the books of every pipeline run and floor measurement:
// OK when each checked run stored every accepted message exactly once.
type countsSummary struct {
	Checked int      `json:"checked"`
	Failed  []string `json:"failed,omitempty"` // "run: problem"
	OK      bool     `json:"ok"`
}

// countRuns fills r.Counts from the runs' books.
func (r *results) countRuns() {
	c := countsSummary{}
	check := func(name string, ok bool, problem string) {
		c.Checked++
		if !ok {
			c.Failed = append(c.Failed, name+": "+problem)
		}
	}
	for _, fr := range r.Floor.Rounds {
		for _, m := range fr.Methods {
			if m.Counts != nil {
				check("floor "+m.Method, m.Counts.OK, m.Counts.Problem)
			}
		}
	}
	var runs []pipelineResult
	for _, b := range sortedKeys(r.Backends) {
		runs = append(runs, r.Backends[b].Runs...)
	}
	for _, p := range r.Scaling {
		if !p.FromMainRuns {
			runs = append(runs, p.Runs...)
		}
	}
	for _, lp := range r.Latency {
		runs = append(runs, lp.Runs...)
	}
	if r.Profiled != nil {
		runs = append(runs, *r.Profiled)
	}
	for _, run := range runs {
		if run.Counts != nil {
			check(run.Run, run.Counts.OK, run.Counts.Problem)
		}
	}
	c.OK = len(c.Failed) == 0
	r.Counts = c
}

type target struct {
	Name  string  `json:"name"`
	Goal  string  `json:"goal"`
	Value float64 `json:"value"`
	Met   *bool   `json:"met"` // nil: not measured
}

func newResults(cfg config) *results {
	r := &results{
		GeneratedAt: time.Now().UTC(),
		Machine:     machine{NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version()},
		Config:      cfg,
		Backends:    map[string]*backendSection{},
	}
	for _, b := range cfg.Backends {
		r.Backends[b] = &backendSection{Available: true}
	}
	return r
}

// backend is b's section (created unavailable when b was not asked for).
func (r *results) backend(b string) *backendSection {
	s, ok := r.Backends[b]
	if !ok {
		s = &backendSection{Unavailable: "not in -backends"}
		r.Backends[b] = s
	}
	return s
}

// summarize computes the main rounds' summaries and ratios.
func (r *results) summarize() {
	r.Floor.Floor = r.Floor.pick(floorPipeline, func(f floorResult) float64 { return f.MsgsPerSecond })
	r.Floor.PhysicalLimit = r.Floor.pick(floorCopy, func(f floorResult) float64 { return f.MsgsPerSecond })
	r.Floor.CPUPer1k = map[string]map[string]summary{}
	for _, m := range []string{floorPipeline, floorCopy} {
		if s := r.Floor.pick(m, func(f floorResult) float64 { return f.MsgsPerSecond }); s.N > 0 {
			r.Floor.CPUPer1k[m] = map[string]summary{
				rolePostgres: r.Floor.pick(m, func(f floorResult) float64 { return f.PGCPUPer1k }),
				roleHarness:  r.Floor.pick(m, func(f floorResult) float64 { return f.ClientCPUPer1k }),
			}
		}
	}
	for _, b := range r.Backends {
		b.summarize()
	}
	median := func(b string) float64 {
		if s := r.Backends[b]; s != nil && s.Throughput.N > 0 {
			return s.Throughput.Median
		}
		return 0
	}
	over := func(a, b float64) float64 {
		if a <= 0 || b <= 0 {
			return 0
		}
		return ratio(a, b)
	}
	floor, limit := r.Floor.Floor.Median, r.Floor.PhysicalLimit.Median
	pg, nats := median(backendPostgres), median(backendNATS)
	r.Ratios = ratios{
		StreamOverRequest:       over(pg, median(backendPostgresRequest)),
		StreamOverFloor:         over(pg, floor),
		StreamOverPhysicalLimit: over(pg, limit),
		FloorOverPhysicalLimit:  over(floor, limit),
		NATSOverFloor:           over(nats, floor),
		PostgresOverNATSDurable: over(pg, nats),
		PostgresOverNATSDefault: over(pg, median(backendNATSDefault)),
	}
}

// pick summarises f over the rounds' measurements of method m.
func (f floorSection) pick(m string, fn func(floorResult) float64) summary {
	var xs []float64
	for _, fr := range f.Rounds {
		if r, ok := fr.method(m); ok {
			xs = append(xs, fn(r))
		}
	}
	return summarize(xs)
}

func (b *backendSection) summarize() {
	// pick summarises f over the runs; perMessage figures (latency, CPU per
	// message) leave out runs that stored nothing, where they are undefined.
	pick := func(perMessage bool, f func(pipelineResult) float64) summary {
		var xs []float64
		for _, r := range b.Runs {
			if !perMessage || r.Persisted > 0 {
				xs = append(xs, f(r))
			}
		}
		return summarize(xs)
	}
	b.Throughput = pick(false, func(r pipelineResult) float64 { return r.MsgsPerSecond })
	b.Offered = pick(false, func(r pipelineResult) float64 { return r.OfferedPerSecond })
	b.P50 = pick(true, func(r pipelineResult) float64 { return r.LatencyP50 })
	b.P99 = pick(true, func(r pipelineResult) float64 { return r.LatencyP99 })
	b.Backlog = pick(false, func(r pipelineResult) float64 { return float64(r.Backlog) })
	b.CPUPer1k = map[string]summary{}
	for _, r := range b.Runs {
		for role := range r.CPUPer1k {
			if _, done := b.CPUPer1k[role]; !done {
				b.CPUPer1k[role] = pick(true, func(r pipelineResult) float64 { return r.CPUPer1k[role] })
			}
		}
	}
}

// finish summarises the scaling points and judges the targets.
func (r *results) finish(cfg config, elapsed time.Duration) {
	r.ElapsedSeconds = elapsed.Seconds()
	r.summarize() // again: a failed run stops before the plan's own summary
	r.countRuns()
	for _, p := range r.Scaling {
		var tp, p99 []float64
		for _, run := range p.Runs {
			tp = append(tp, run.MsgsPerSecond)
			if run.Persisted > 0 {
				p99 = append(p99, run.LatencyP99)
			}
		}
		p.Throughput, p.P99 = summarize(tp), summarize(p99)
	}
	judge := func(name, goal string, value float64, measured bool, met bool) {
		t := target{Name: name, Goal: goal, Value: value}
		if measured {
			t.Met = &met
		}
		r.Targets = append(r.Targets, t)
	}
	judge("postgres pipeline / nats pipeline (fsync always)", fmt.Sprintf(">= %.1f", targetPostgresOverNATS), r.Ratios.PostgresOverNATSDurable,
		r.Ratios.PostgresOverNATSDurable > 0, r.Ratios.PostgresOverNATSDurable >= targetPostgresOverNATS)
	judge("streaming / request-per-publish pipeline", fmt.Sprintf(">= %.1f", targetStreamOverRequest), r.Ratios.StreamOverRequest,
		r.Ratios.StreamOverRequest > 0, r.Ratios.StreamOverRequest >= targetStreamOverRequest)
	judge("streaming pipeline / floor (the pipeline's statements)", fmt.Sprintf(">= %.2f", targetStreamOverFloor), r.Ratios.StreamOverFloor,
		r.Ratios.StreamOverFloor > 0, r.Ratios.StreamOverFloor >= targetStreamOverFloor)
	for _, lp := range r.Latency {
		lp.summarize()
		if lp.P50.N == 0 || lp.Backend != backendPostgres {
			continue
		}
		at := lp.label()
		judge("streaming stamp→persisted p50 "+at, fmt.Sprintf("< %.0fms", targetLatencyP50*1000),
			lp.P50.Median, true, lp.P50.Median < targetLatencyP50)
		judge("streaming stamp→persisted p99 "+at, fmt.Sprintf("< %.0fms", targetLatencyP99*1000),
			lp.P99.Median, true, lp.P99.Median < targetLatencyP99)
	}
	r.Notes = append(r.Notes,
		fmt.Sprintf("%d CPUs shared by every process of the pipeline, PostgreSQL, the harness and anything else running: figures are noisy (load average before/after: %s / %s)",
			r.Machine.NumCPU, r.Machine.LoadAverage[0], r.Machine.LoadAverage[1]),
		"each app runs with GOMAXPROCS="+appGOMAXPROCS()+" (as a pod requesting at most 1 CPU gets from the charts; set GOMAXPROCS for make bench to change it), natsd with the machine's "+strconv.Itoa(r.Machine.NumCPU),
		"msgs/s persisted = samples the streamer stamped inside the window, counted after the pipeline stopped (all committed)",
		"latency = stamp → persisted: the collectors' collector_sample_age_seconds over the window (the streamer stamps a row when it sends it); publish → acknowledged: the streamers' streamer_publish_duration_seconds; both bucket-interpolated quantiles (buckets 1.5× apart)",
		"postgres = the streaming publish path (STREAMER_TRANSPORT=stream); postgres-request = a request per publish; nats = JetStream with fsync before every acknowledgement (equal durability), async publish window and batched fetch; nats-default = JetStream's default durability (NATS_SYNC=default, fsync every 2 min)",
		"CPU per 1k msgs: process_cpu_seconds_total deltas of each app (natsd: /proc); postgres = the backends of the run's database, from /proc; total excludes postgres_background (shared with the whole cluster)",
		"floor = the pipeline's own statements per message through its adapters in the harness's process (pgqueue Writer.Publish of full -floor-batch publishes, Reader.Lease of -floor-lease and Ack with its refills and batched deletes, the postgres store's WriteBatch with series registration and registry upkeep), -floor-workers publishers and as many consumers, no HTTP; physical limit = COPY of the queue rows, COPY of the samples (made-up series ids, no registration, no conflict check), DELETE of the queue rows, each committed, batched",
		"floor CPU: postgres = the backends of its database; harness = the bench process itself (for the floor, the adapters' and the decoding's work, the apps' share without HTTP)",
		"counts: every pipeline run ends with a drain (streamers stopped, queue emptied, collectors idle) and checks that every message the queue accepted is stored once or counted as a duplicate sample; a failed check fails the bench")
}

func (r *results) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// printReport writes the table.
func printReport(w io.Writer, r *results) {
	cfg := r.Config
	fmt.Fprintf(w, "\n=== make bench: %d CPUs (shared, noisy), PostgreSQL %s, %s; %d run(s) each, %gs window after %gs warm-up; median [min–max]\n",
		r.Machine.NumCPU, r.Machine.PostgresVersion, r.Machine.GoVersion, cfg.Runs, cfg.DurationSeconds, cfg.WarmupSeconds)
	d := r.Machine.PostgresDurability
	fmt.Fprintf(w, "PostgreSQL durability: fsync=%s synchronous_commit=%s wal_sync_method=%s; load average before/after %s / %s\n",
		d["fsync"], d["synchronous_commit"], d["wal_sync_method"], r.Machine.LoadAverage[0], r.Machine.LoadAverage[1])
	if cfg.LatencyRate == 0 { // a -latency-rate run measures nothing else
		printThroughput(w, r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(r.Scaling) > 0 {
		fmt.Fprintln(tw, "\nSCALING streamers×collectors\tbackend\tmsgs/s\tp99 latency\truns\t")
		for _, p := range r.Scaling {
			tp, p99 := "unavailable", ""
			if p.Throughput.N > 0 {
				tp, p99 = fmtSummary(p.Throughput, fmtRate), fmtSummary(p.P99, fmtSeconds)
			}
			src := fmt.Sprint(p.Throughput.N)
			if p.FromMainRuns {
				src += " (main)"
			}
			fmt.Fprintf(tw, "%d×%d\t%s\t%s\t%s\t%s\t\n", p.Streamers, p.Collectors, p.Backend, tp, p99, src)
		}
		tw.Flush()
	}

	if len(r.Latency) > 0 {
		fmt.Fprintln(tw, "\nLATENCY at a fraction of the sustained rate (median [min–max] of the runs)\ttarget msgs/s\tpacing\truns\tpersisted msgs/s\tstamp→persisted p50\tp99\tmax\tpublish→ack p50\tp99\t")
		for _, lp := range r.Latency {
			res := lp.Result
			if lp.P50.N == 0 {
				fmt.Fprintf(tw, "%s %s\t%s\t%d streamers × %d msgs/s\t%d\tnothing persisted\t\t\t\t\t\n", lp.Backend, lp.label(),
					fmtRate(lp.TargetRate), lp.Streamers, lp.Rate, len(lp.Runs))
				continue
			}
			longest := 0.0
			for _, run := range lp.Runs {
				longest = max(longest, run.LatencyMax)
			}
			fmt.Fprintf(tw, "%s %s\t%s\t%d streamers × %d msgs/s = %s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", lp.Backend, lp.label(),
				fmtRate(lp.TargetRate), lp.Streamers, lp.Rate, fmtRate(lp.PacedRate), len(lp.Runs), fmtRate(res.MsgsPerSecond),
				fmtSummary(lp.P50, fmtSeconds), fmtSummary(lp.P99, fmtSeconds), fmtSeconds(longest),
				fmtSummary(lp.AckP50, fmtSeconds), fmtSummary(lp.AckP99, fmtSeconds))
		}
		tw.Flush()
		fmt.Fprintln(tw, "\nWHERE THE TIME GOES in the median latency run\tstep\tcount\tp50\tp99\t")
		for _, lp := range r.Latency {
			for _, n := range stageHistograms {
				if st, ok := lp.Result.Stages[n]; ok {
					fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t\n", lp.Backend, n, st.Count, fmtSeconds(st.P50), fmtSeconds(st.P99))
				}
			}
		}
		tw.Flush()
	}

	fmt.Fprintln(tw, "\nTARGETS\tgoal\tvalue\tmet\t")
	for _, t := range r.Targets {
		met := "not measured"
		if t.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*t.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3g\t%s\t\n", t.Name, t.Goal, t.Value, met)
	}
	tw.Flush()

	if p := r.Profiled; p != nil {
		fmt.Fprintf(w, "\nPROFILES (postgres pipeline, %gs window, %s msgs/s while profiled)\n", p.Seconds, fmtRate(p.MsgsPerSecond))
		for _, pr := range p.Profiles {
			fmt.Fprintf(w, "--- %s: %s %s\n", pr.App, pr.File, pr.Err)
			for _, l := range pr.Top {
				fmt.Fprintln(w, "   ", l)
			}
		}
		if len(p.ServerStatements) > 0 {
			fmt.Fprintln(w, "--- postgres: busy samples of pg_stat_activity by statement and wait")
			for _, s := range p.ServerStatements {
				fmt.Fprintf(w, "    %5.1f%%  %-28s %s\n", s.Share*100, s.Wait, s.Statement)
			}
		}
	}
	for _, b := range sortedKeys(r.Backends) {
		if s := r.Backends[b]; !s.Available && s.Unavailable != "" {
			fmt.Fprintf(w, "\n%s: unavailable (%s)\n", b, s.Unavailable)
		}
	}
	fmt.Fprintf(w, "\nelapsed %s\n", time.Duration(r.ElapsedSeconds*float64(time.Second)).Round(time.Second))
	if r.Counts.OK {
		fmt.Fprintf(w, "COUNTS: %d runs checked after their drain: every accepted message stored once\n", r.Counts.Checked)
	} else {
		fmt.Fprintf(w, "COUNTS FAILED (%d of %d runs):\n", len(r.Counts.Failed), r.Counts.Checked)
		for _, f := range r.Counts.Failed {
			fmt.Fprintf(w, "    %s\n", f)
		}
	}
	if r.Error != "" {
		fmt.Fprintf(w, "INCOMPLETE: %s\n", r.Error)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// printThroughput writes the throughput, ratio and CPU tables.
func printThroughput(w io.Writer, r *results) {
	cfg := r.Config
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTHROUGHPUT\tmsgs/s persisted\taccepted by queue\tp50 latency\tp99 latency\tbacklog at end\t")
	if r.Floor.Floor.N > 0 {
		fmt.Fprintf(tw, "floor: the pipeline's statements (%d publishers × %d, %d consumers × lease %d)\t%s\t\t\t\t\t\n",
			cfg.FloorWorkers, cfg.FloorBatch, cfg.FloorWorkers, cfg.FloorLease, fmtSummary(r.Floor.Floor, fmtRate))
	}
	if r.Floor.PhysicalLimit.N > 0 {
		fmt.Fprintf(tw, "physical limit: COPY only (%d conns, batch %d)\t%s\t\t\t\t\t\n", cfg.FloorWorkers, cfg.FloorBatch, fmtSummary(r.Floor.PhysicalLimit, fmtRate))
	}
	for _, name := range allBackends {
		b, ok := r.Backends[name]
		if !ok {
			continue
		}
		label := fmt.Sprintf("pipeline %s %d×%d", name, cfg.Streamers, cfg.Collectors)
		if baseBackend(name) == backendPostgres {
			label += fmt.Sprintf(", %d reader(s)", cfg.Readers)
		}
		if b.Throughput.N == 0 {
			fmt.Fprintf(tw, "%s\tunavailable (%s)\t\t\t\t\t\n", label, b.Unavailable)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", label, fmtSummary(b.Throughput, fmtRate), fmtSummary(b.Offered, fmtRate), fmtSummary(b.P50, fmtSeconds),
			fmtSummary(b.P99, fmtSeconds), fmtSummary(b.Backlog, func(v float64) string { return fmt.Sprintf("%.0f", v) }))
	}
	tw.Flush()

	fmt.Fprintln(tw, "\nRATIOS (medians)\tvalue\ttarget\t")
	ratioRow := func(name string, v float64, goal string) {
		s := "-"
		if v > 0 {
			s = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", name, s, goal)
	}
	ratioRow("streaming / floor (the pipeline's statements)", r.Ratios.StreamOverFloor, fmt.Sprintf(">= %.2f", targetStreamOverFloor))
	ratioRow("streaming / physical limit (COPY only)", r.Ratios.StreamOverPhysicalLimit, "reported")
	ratioRow("floor / physical limit", r.Ratios.FloorOverPhysicalLimit, "reported")
	ratioRow("pipeline nats / floor", r.Ratios.NATSOverFloor, "")
	ratioRow("pipeline postgres / nats (fsync always)", r.Ratios.PostgresOverNATSDurable, fmt.Sprintf(">= %.1f", targetPostgresOverNATS))
	ratioRow("pipeline postgres / nats-default (lazy fsync)", r.Ratios.PostgresOverNATSDefault, "reported")
	ratioRow("streaming / request-per-publish", r.Ratios.StreamOverRequest, fmt.Sprintf(">= %.1f", targetStreamOverRequest))
	tw.Flush()

	roles := []string{roleStreamer, roleWriter, roleReader, roleCollector, roleNATS, rolePostgres, roleTotal, rolePGBackground}
	fmt.Fprintf(tw, "\nCPU s per 1,000 msgs (median)\t%s\t\n", strings.Join(roles, "\t"))
	for _, m := range []struct{ method, label string }{{floorPipeline, "floor"}, {floorCopy, "physical limit"}} {
		c, ok := r.Floor.CPUPer1k[m.method]
		if !ok {
			continue
		}
		p, h := c[rolePostgres].Median, c[roleHarness].Median
		row := []string{"", "", "", "", "", fmtCPU(p), fmtCPU(p + h), ""}
		fmt.Fprintf(tw, "%s (total incl. the harness's %s)\t%s\t\n", m.label, fmtCPU(h), strings.Join(row, "\t"))
	}
	for _, name := range allBackends {
		b, ok := r.Backends[name]
		if !ok || b.Throughput.N == 0 {
			continue
		}
		var row []string
		for _, role := range roles {
			s, ok := b.CPUPer1k[role]
			if !ok || (s.Median == 0 && (role == roleNATS || role == roleWriter || role == roleReader)) {
				row = append(row, "-")
				continue
			}
			row = append(row, fmtCPU(s.Median))
		}
		fmt.Fprintf(tw, "pipeline %s\t%s\t\n", name, strings.Join(row, "\t"))
	}
	tw.Flush()
}
