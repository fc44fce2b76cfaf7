package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

var quietLogger = slog.New(slog.DiscardHandler)

// Targets of issue 7 (goals to report, not assertions).
const (
	targetPipelineOverFloor = 0.5
	targetPostgresOverNATS  = 1.0
	targetLatencyP99        = 1.0 // seconds, at -latency-load of the sustained rate
	// Issue 16's.
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

type floorSection struct {
	Rounds []floorRound `json:"rounds"`
	// Best is each round's faster method.
	Best     summary            `json:"best_msgs_per_second"`
	ByMethod map[string]summary `json:"msgs_per_second_by_method"`
}

type floorRound struct {
	Methods    []floorResult `json:"methods"`
	Best       float64       `json:"best_msgs_per_second"`
	BestMethod string        `json:"best_method"`
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
// pipeline; "nats" is JetStream at equal durability (fsync always).
type ratios struct {
	PostgresOverFloor float64 `json:"postgres_pipeline_over_floor,omitempty"`
	NATSOverFloor     float64 `json:"nats_pipeline_over_floor,omitempty"`
	PostgresOverNATS  float64 `json:"postgres_over_nats,omitempty"`
	// Issue 16's names.
	StreamOverRequest       float64 `json:"stream_over_request,omitempty"`
	StreamOverFloor         float64 `json:"stream_over_floor,omitempty"`
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
	Backend    string          `json:"backend"`
	Load       float64         `json:"load"`
	Sustained  float64         `json:"sustained_msgs_per_second"`
	TargetRate float64         `json:"target_msgs_per_second"`
	Streamers  int             `json:"streamers"`
	IntervalMS int             `json:"interval_ms"`
	PacedRate  float64         `json:"paced_msgs_per_second"`
	Result     *pipelineResult `json:"result"`
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
	var best []float64
	by := map[string][]float64{}
	for _, fr := range r.Floor.Rounds {
		best = append(best, fr.Best)
		for _, m := range fr.Methods {
			by[m.Method] = append(by[m.Method], m.MsgsPerSecond)
		}
	}
	r.Floor.Best = summarize(best)
	r.Floor.ByMethod = map[string]summary{}
	for m, xs := range by {
		r.Floor.ByMethod[m] = summarize(xs)
	}
	for _, b := range r.Backends {
		b.summarize()
	}
	floor := r.Floor.Best.Median
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
	pg, nats := median(backendPostgres), median(backendNATS)
	r.Ratios.PostgresOverFloor = over(pg, floor)
	r.Ratios.NATSOverFloor = over(nats, floor)
	r.Ratios.PostgresOverNATS = over(pg, nats)
	r.Ratios.StreamOverRequest = over(pg, median(backendPostgresRequest))
	r.Ratios.StreamOverFloor = r.Ratios.PostgresOverFloor
	r.Ratios.PostgresOverNATSDurable = r.Ratios.PostgresOverNATS
	r.Ratios.PostgresOverNATSDefault = over(pg, median(backendNATSDefault))
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
	judge("postgres pipeline / floor", fmt.Sprintf(">= %.1f", targetPipelineOverFloor), r.Ratios.PostgresOverFloor,
		r.Ratios.PostgresOverFloor > 0, r.Ratios.PostgresOverFloor >= targetPipelineOverFloor)
	judge("postgres pipeline / nats pipeline (fsync always)", fmt.Sprintf(">= %.1f", targetPostgresOverNATS), r.Ratios.PostgresOverNATS,
		r.Ratios.PostgresOverNATS > 0, r.Ratios.PostgresOverNATS >= targetPostgresOverNATS)
	judge("streaming / request-per-publish pipeline", fmt.Sprintf(">= %.1f", targetStreamOverRequest), r.Ratios.StreamOverRequest,
		r.Ratios.StreamOverRequest > 0, r.Ratios.StreamOverRequest >= targetStreamOverRequest)
	judge("streaming pipeline / floor (issue 16)", fmt.Sprintf(">= %.2f", targetStreamOverFloor), r.Ratios.StreamOverFloor,
		r.Ratios.StreamOverFloor > 0, r.Ratios.StreamOverFloor >= targetStreamOverFloor)
	for _, lp := range r.Latency {
		if lp.Result == nil || lp.Result.Persisted == 0 {
			continue
		}
		judge(fmt.Sprintf("%s p99 at %.0f%% of sustained rate", lp.Backend, lp.Load*100), fmt.Sprintf("< %.0fs", targetLatencyP99),
			lp.Result.LatencyP99, true, lp.Result.LatencyP99 < targetLatencyP99)
	}
	r.Notes = append(r.Notes,
		fmt.Sprintf("%d CPUs shared by every process of the pipeline, PostgreSQL, the harness and anything else running: figures are noisy (load average before/after: %s / %s)",
			r.Machine.NumCPU, r.Machine.LoadAverage[0], r.Machine.LoadAverage[1]),
		"msgs/s persisted = samples the streamer stamped inside the window, counted after the pipeline stopped (all committed)",
		"latency = stamp → persisted: the collectors' collector_sample_age_seconds over the window (the streamer stamps a row when it sends it); publish → acknowledged: the streamers' streamer_publish_duration_seconds; both bucket-interpolated quantiles (buckets 1.5× apart)",
		"postgres = the streaming publish path (STREAMER_TRANSPORT=stream); postgres-request = a request per publish; nats = JetStream with fsync before every acknowledgement (equal durability), async publish window and batched fetch; nats-default = JetStream's default durability (NATS_SYNC=default, fsync every 2 min)",
		"CPU per 1k msgs: process_cpu_seconds_total deltas of each app (natsd: /proc); postgres = the backends of the run's database, from /proc; total excludes postgres_background (shared with the whole cluster)",
		"floor = queue INSERT, telemetry INSERT, queue DELETE, each committed, batched, no GPU registry upsert; the faster of COPY and unnest per round")
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
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nTHROUGHPUT\tmsgs/s persisted\taccepted by queue\tp50 latency\tp99 latency\tbacklog at end\t")
	if r.Floor.Best.N > 0 {
		fmt.Fprintf(tw, "database floor (best of copy/unnest, %d conns, batch %d)\t%s\t\t\t\t\t\n", cfg.FloorWorkers, cfg.FloorBatch, fmtSummary(r.Floor.Best, fmtRate))
		for _, m := range sortedKeys(r.Floor.ByMethod) {
			fmt.Fprintf(tw, "  floor by %s\t%s\t\t\t\t\t\n", m, fmtSummary(r.Floor.ByMethod[m], fmtRate))
		}
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
	ratioRow("pipeline postgres / floor", r.Ratios.PostgresOverFloor, fmt.Sprintf(">= %.1f", targetPipelineOverFloor))
	ratioRow("pipeline nats / floor", r.Ratios.NATSOverFloor, "")
	ratioRow("pipeline postgres / nats (fsync always)", r.Ratios.PostgresOverNATS, fmt.Sprintf(">= %.1f", targetPostgresOverNATS))
	ratioRow("pipeline postgres / nats-default (lazy fsync)", r.Ratios.PostgresOverNATSDefault, "reported")
	ratioRow("streaming / request-per-publish", r.Ratios.StreamOverRequest, fmt.Sprintf(">= %.1f", targetStreamOverRequest))
	tw.Flush()

	roles := []string{roleStreamer, roleWriter, roleReader, roleCollector, roleNATS, rolePostgres, roleTotal, rolePGBackground}
	fmt.Fprintf(tw, "\nCPU s per 1,000 msgs (median)\t%s\t\n", strings.Join(roles, "\t"))
	if r.Floor.Best.N > 0 {
		var pg, client []float64
		for _, fr := range r.Floor.Rounds {
			for _, m := range fr.Methods {
				if m.Method == fr.BestMethod {
					pg, client = append(pg, m.PGCPUPer1k), append(client, m.ClientCPUPer1k)
				}
			}
		}
		p, c := summarize(pg).Median, summarize(client).Median
		row := []string{"", "", "", "", "", fmtCPU(p), fmtCPU(p + c), ""}
		fmt.Fprintf(tw, "database floor (total incl. its client %s)\t%s\t\n", fmtCPU(c), strings.Join(row, "\t"))
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
		fmt.Fprintln(tw, "\nLATENCY at a fraction of the sustained rate\ttarget msgs/s\tpacing\tpersisted msgs/s\tstamp→persisted p50\tp99\tmax\tpublish→ack p50\tp99\t")
		for _, lp := range r.Latency {
			res := lp.Result
			if res.Persisted == 0 {
				fmt.Fprintf(tw, "%s at %.0f%% of %s\t%s\t%d streamers × 1 msg/%dms\tnothing persisted\t\t\t\t\n", lp.Backend, lp.Load*100,
					fmtRate(lp.Sustained), fmtRate(lp.TargetRate), lp.Streamers, lp.IntervalMS)
				continue
			}
			fmt.Fprintf(tw, "%s at %.0f%% of %s\t%s\t%d streamers × 1 msg/%dms = %s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", lp.Backend, lp.Load*100, fmtRate(lp.Sustained),
				fmtRate(lp.TargetRate), lp.Streamers, lp.IntervalMS, fmtRate(lp.PacedRate), fmtRate(res.MsgsPerSecond),
				fmtSeconds(res.LatencyP50), fmtSeconds(res.LatencyP99), fmtSeconds(res.LatencyMax), fmtSeconds(res.AckP50), fmtSeconds(res.AckP99))
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
