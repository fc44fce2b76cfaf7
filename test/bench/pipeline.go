package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/test/freeport"
	"github.com/gpufleet/telemetry/test/stack"
)

// Queue backends the pipeline runs with, each a configuration of one of
// two process layouts (baseBackend).
const (
	// backendPostgres: streamer → mqwriter → PostgreSQL → mqreader →
	// collector, the streamer on the streaming publish path (its default).
	backendPostgres = "postgres"
	// backendPostgresRequest: the same with a request per publish
	// (STREAMER_TRANSPORT=request).
	backendPostgresRequest = "postgres-request"
	// backendNATS: streamer → natsd (JetStream) → collector, fsync before
	// every acknowledgement (equal durability), the adapter's best client
	// configuration (async publish window, batched fetch, one confirmed ack
	// per lease).
	backendNATS = "nats"
	// backendNATSDefault: the same at JetStream's default durability
	// (NATS_SYNC=default: fsync every 2 minutes).
	backendNATSDefault = "nats-default"
)

// allBackends are the backends in report order.
var allBackends = []string{backendPostgres, backendPostgresRequest, backendNATS, backendNATSDefault}

// baseBackend is b's process layout and QUEUE_BACKEND: postgres or nats.
func baseBackend(b string) string {
	if b == backendNATS || b == backendNATSDefault {
		return backendNATS
	}
	return backendPostgres
}

// variantEnv is what b sets beyond its layout: for the streamers and
// collectors, and for natsd.
func variantEnv(b string) (apps, natsd map[string]string) {
	switch b {
	case backendPostgresRequest:
		return map[string]string{"STREAMER_TRANSPORT": "request"}, nil
	case backendNATSDefault:
		return map[string]string{"STREAMER_TRANSPORT": "stream"}, map[string]string{"NATS_SYNC": "default"}
	case backendNATS:
		return map[string]string{"STREAMER_TRANSPORT": "stream"}, map[string]string{"NATS_SYNC": "always"}
	default:
		return map[string]string{"STREAMER_TRANSPORT": "stream"}, nil
	}
}

// Process roles, the rows of the CPU breakdown.
const (
	roleStreamer     = "streamer"
	roleWriter       = "mqwriter"
	roleReader       = "mqreader"
	roleCollector    = "collector"
	roleNATS         = "natsd"
	rolePostgres     = "postgres"            // backends of the run's database
	rolePGBackground = "postgres_background" // WAL writer, checkpointer, bgwriter: shared by the whole cluster
	roleTotal        = "total"
	roleHarness      = "harness" // the bench process itself (the floors)
)

// Metrics read from the apps.
const (
	metricCPU       = "process_cpu_seconds_total"
	metricPublished = "streamer_messages_published_total"
	metricPersisted = "collector_records_persisted_total"
)

// errStart marks a failure to bring a pipeline up (as opposed to one that
// failed while measured): for NATS it means the backend is unavailable.
var errStart = errors.New("pipeline did not start")

// pipelineConfig is one pipeline run.
type pipelineConfig struct {
	Backend    string `json:"backend"`
	Streamers  int    `json:"streamers"`
	Collectors int    `json:"collectors"`
	Readers    int    `json:"readers,omitempty"`           // mqreader processes (postgres only)
	Rate       int    `json:"rate_per_streamer,omitempty"` // STREAMER_RATE msgs/s; 0: as fast as the queue accepts

	warmup   time.Duration
	duration time.Duration
	pprofDir string // when set, CPU profiles of the apps are captured over the window
	name     string // unique per run: log folder, database name suffix
}

// stageTimes is one step's observations over a window: how many, and the
// bucket-interpolated median and 99th percentile.
type stageTimes struct {
	Count float64 `json:"count"`
	P50   float64 `json:"p50_seconds"`
	P99   float64 `json:"p99_seconds"`
}

// pipelineResult is what one run measured over its window.
type pipelineResult struct {
	pipelineConfig
	Run     string  `json:"run"` // the run's name (its log folder)
	Seconds float64 `json:"seconds"`
	// Persisted is the samples the streamer stamped inside the window.
	Persisted     int64   `json:"persisted"`
	MsgsPerSecond float64 `json:"msgs_per_second"`
	// OfferedPerSecond is what the streamers got acknowledged by the queue
	// over the window (streamer_messages_published_total).
	OfferedPerSecond float64 `json:"offered_per_second"`
	// Latency is stamp → persisted: from the streamer's stamp (taken when
	// it sends the row) to the commit of the sample, from the collectors'
	// collector_sample_age_seconds over the window (bucket-interpolated).
	LatencyP50 float64 `json:"latency_p50_seconds"`
	LatencyP99 float64 `json:"latency_p99_seconds"`
	LatencyMax float64 `json:"latency_max_seconds"` // upper bound of the highest non-empty bucket
	// AckP50 and AckP99 are publish → acknowledged, from the streamers'
	// streamer_publish_duration_seconds over the window.
	AckP50 float64 `json:"publish_to_ack_p50_seconds"`
	AckP99 float64 `json:"publish_to_ack_p99_seconds"`
	// Stages are the steps in between over the window, by histogram name
	// (stageHistograms): where the time goes.
	Stages map[string]stageTimes `json:"stages,omitempty"`
	// Backlog at the end of the window: queue_messages rows (postgres) or
	// messages acknowledged to the streamers and not yet stored (nats).
	Backlog       int64  `json:"backlog"`
	BacklogSource string `json:"backlog_source"`
	// CPUSeconds per role over the window; CPUPer1k divides by Persisted/1000.
	CPUSeconds map[string]float64 `json:"cpu_seconds"`
	CPUPer1k   map[string]float64 `json:"cpu_seconds_per_1k_msgs"`
	// CPUByProcess is each app process's CPU seconds over the window.
	CPUByProcess map[string]float64 `json:"cpu_seconds_by_process"`
	// PostgresCPU says why the server's CPU is missing, when it is.
	PostgresCPU string    `json:"postgres_cpu,omitempty"`
	Profiles    []profile `json:"profiles,omitempty"`
	// ServerStatements is PostgreSQL's busy time by statement, sampled from
	// pg_stat_activity during a profiled run.
	ServerStatements []statementShare `json:"server_statements,omitempty"`
	// Counts are the run's books after its drain.
	Counts *countCheck `json:"counts,omitempty"`
}

// harness is what every run shares.
type harness struct {
	srv     *server
	binDir  string
	logDir  string
	csvPath string
	dbName  string // the run's database name (dropped and created per run)
	ports   freeport.Pool
}

// running is one pipeline's processes.
type running struct {
	cfg    pipelineConfig
	procs  []*stack.Proc     // every process, in start order
	roles  map[string]string // process name → role
	pgPool *pgxpool.Pool     // the harness's connection to the run's database
	dbName string
}

// runPipeline brings a pipeline up on a fresh database, lets it warm up,
// measures a window, and takes it down.
func (h *harness) runPipeline(ctx context.Context, cfg pipelineConfig) (pipelineResult, error) {
	res := pipelineResult{pipelineConfig: cfg, Run: cfg.name, CPUSeconds: map[string]float64{}, CPUPer1k: map[string]float64{}, CPUByProcess: map[string]float64{}}
	dsn, err := h.srv.fresh(ctx, h.dbName)
	if err != nil {
		return res, err
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return res, fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	r := &running{cfg: cfg, roles: map[string]string{}, pgPool: pool, dbName: h.dbName}
	defer r.stop()
	if err := h.start(ctx, r, dsn); err != nil {
		return res, fmt.Errorf("%w: %w", errStart, err)
	}
	if err := r.sleep(ctx, cfg.warmup); err != nil {
		return res, err
	}
	local, reason := pgLocal(ctx, pool)
	if !local {
		res.PostgresCPU = "not measured: " + reason
	}
	before, err := r.snapshot(ctx, local)
	if err != nil {
		return res, err
	}
	profiled := make(chan []profile, 1)
	sampled := make(chan []statementShare, 1)
	if cfg.pprofDir != "" {
		go func() { profiled <- captureProfiles(ctx, r, cfg.pprofDir, cfg.duration) }()
		sctx, cancel := context.WithTimeout(ctx, cfg.duration)
		defer cancel()
		go func() { sampled <- sampleServer(sctx, r, 20*time.Millisecond) }()
	} else {
		profiled <- nil
		sampled <- nil
	}
	if err := r.sleep(ctx, cfg.duration); err != nil {
		return res, err
	}
	after, err := r.snapshot(ctx, local)
	if err != nil {
		return res, err
	}
	res.Profiles, res.ServerStatements = <-profiled, <-sampled
	var backlog int64
	if baseBackend(cfg.Backend) == backendPostgres {
		res.BacklogSource = "queue_messages rows"
		err = pool.QueryRow(ctx, sqlCountQueue).Scan(&backlog)
	} else {
		var stored int64
		res.BacklogSource = "acknowledged to streamers minus stored"
		err = pool.QueryRow(ctx, sqlCountTelemetry).Scan(&stored)
		// The count runs after the snapshot, and a collector may store a
		// message before its publisher hears the ack: in a run that keeps
		// up, stored can pass published. Nothing is waiting then.
		backlog = max(int64(after.published)-stored, 0)
	}
	if err != nil {
		return res, fmt.Errorf("backlog: %w", err)
	}
	res.Backlog = backlog
	// Drain and stop before reading the window: every row stamped inside
	// it has then committed, and the books can be checked.
	if res.Counts, err = r.drain(ctx); err != nil {
		return res, fmt.Errorf("drain: %w", err)
	}
	r.stop()
	if err := pool.QueryRow(ctx, sqlWindowLatency, before.at, after.at).
		Scan(&res.Persisted, &res.LatencyP50, &res.LatencyP99, &res.LatencyMax); err != nil {
		return res, fmt.Errorf("window: %w", err)
	}
	age := after.hist[histStampToPersisted].minus(before.hist[histStampToPersisted])
	res.LatencyP50, res.LatencyP99, res.LatencyMax = age.quantile(0.5), age.quantile(0.99), age.quantile(1)
	ack := after.hist[histPublishToAck].minus(before.hist[histPublishToAck])
	res.AckP50, res.AckP99 = ack.quantile(0.5), ack.quantile(0.99)
	res.Stages = map[string]stageTimes{}
	for _, n := range stageHistograms {
		if h := after.hist[n].minus(before.hist[n]); h.count() > 0 {
			res.Stages[n] = stageTimes{Count: h.count(), P50: h.quantile(0.5), P99: h.quantile(0.99)}
		}
	}
	res.Seconds = after.at.Sub(before.at).Seconds()
	res.MsgsPerSecond = float64(res.Persisted) / res.Seconds
	res.OfferedPerSecond = (after.published - before.published) / res.Seconds
	for name, role := range r.roles {
		d := after.cpu[name] - before.cpu[name]
		res.CPUSeconds[role] += d
		res.CPUByProcess[name] = d
	}
	if local {
		res.CPUSeconds[rolePostgres] = cpuDelta(before.pg.backends, after.pg.backends)
		res.CPUSeconds[rolePGBackground] = cpuDelta(before.pg.background, after.pg.background)
	}
	var total float64
	for role, s := range res.CPUSeconds {
		if role != rolePGBackground { // shared with whatever else uses the cluster
			total += s
		}
	}
	res.CPUSeconds[roleTotal] = total
	if res.Persisted > 0 {
		for role, s := range res.CPUSeconds {
			res.CPUPer1k[role] = s / float64(res.Persisted) * 1000
		}
	}
	return res, nil
}

// start launches the processes: the queue first, then the collectors, then
// the streamers, each stage ready before the next.
func (h *harness) start(ctx context.Context, r *running, dsn string) error {
	cfg := r.cfg
	logDir := filepath.Join(h.logDir, cfg.name)
	base := map[string]string{"DATABASE_URL": dsn, "MIGRATE_ON_START": "false"}
	defaultEnv(base, "LOG_LEVEL", "warn")
	// One P per app, as the charts give a pod requesting ≤ 1 CPU
	// (GOMAXPROCS from requests.cpu, docs/adr/0017): a dozen Go processes
	// each sized to the whole machine spend its two CPUs waking each other.
	defaultEnv(base, "GOMAXPROCS", appGOMAXPROCS())
	if cfg.pprofDir != "" {
		base["PPROF"] = "true"
	}
	appsEnv, natsdEnv := variantEnv(cfg.Backend)
	queue := merge(map[string]string{"QUEUE_BACKEND": baseBackend(cfg.Backend)}, appsEnv)
	var stages [][]spec
	switch baseBackend(cfg.Backend) {
	case backendPostgres:
		ranges, err := domain.SplitPartitions(cfg.Readers)
		if err != nil {
			return err
		}
		stage := []spec{{name: roleWriter, role: roleWriter}}
		var readerURLs []string
		for i, rg := range ranges {
			s := spec{name: fmt.Sprintf("%s-%d", roleReader, i+1), role: roleReader,
				env: map[string]string{"PARTITIONS": rg.String()}}
			defaultEnv(s.env, "READER_DRAIN_TIMEOUT_MS", "2000")
			if err := s.allocate(&h.ports); err != nil {
				return err
			}
			readerURLs = append(readerURLs, "http://"+s.addr)
			stage = append(stage, s)
		}
		if err := stage[0].allocate(&h.ports); err != nil {
			return err
		}
		queue["MQ_READER_URLS"] = strings.Join(readerURLs, ",")
		queue["MQ_WRITER_URL"] = "http://" + stage[0].addr
		stages = append(stages, stage)
	case backendNATS:
		natsAddr, err := h.ports.Addr()
		if err != nil {
			return err
		}
		store := filepath.Join(logDir, "nats-store")
		// natsd keeps Go's default, the whole machine: NATS at its best.
		stages = append(stages, []spec{{name: roleNATS, role: roleNATS, binary: "natsd",
			env: merge(map[string]string{"NATS_ADDR": natsAddr, "NATS_STORE_DIR": store, "GOMAXPROCS": strconv.Itoa(runtime.NumCPU())}, natsdEnv)}})
		queue["NATS_URL"] = "nats://" + natsAddr
	default:
		return fmt.Errorf("unknown backend %q", cfg.Backend)
	}
	var collectors, streamers []spec
	for i := range cfg.Collectors {
		collectors = append(collectors, spec{name: fmt.Sprintf("%s-%d", roleCollector, i+1), role: roleCollector,
			env: merge(queue, map[string]string{"COLLECTOR_ID": fmt.Sprintf("bench-collector-%d", i+1)})})
	}
	for i := range cfg.Streamers {
		streamers = append(streamers, spec{name: fmt.Sprintf("%s-%d", roleStreamer, i+1), role: roleStreamer,
			env: merge(queue, map[string]string{"STREAMER_CSV_PATH": h.csvPath, "STREAMER_RATE": strconv.Itoa(cfg.Rate)})})
	}
	stages = append(stages, collectors, streamers)
	for _, stage := range stages {
		for i := range stage {
			s := &stage[i]
			if err := s.allocate(&h.ports); err != nil {
				return err
			}
			bin := s.binary
			if bin == "" {
				bin = s.role
			}
			p, err := stack.Start(filepath.Join(h.binDir, bin), s.name, s.addr, logDir, merge(base, s.env))
			if err != nil {
				return err
			}
			r.procs = append(r.procs, p)
			r.roles[s.name] = s.role
		}
		g, gctx := errgroup.WithContext(ctx)
		for _, p := range r.procs[len(r.procs)-len(stage):] {
			g.Go(func() error {
				rctx, cancel := context.WithTimeout(gctx, 60*time.Second)
				defer cancel()
				return p.WaitReady(rctx, "/readyz")
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// spec is one process to start.
type spec struct {
	name, role string
	binary     string // default: role
	addr       string // HTTP_ADDR, allocated once
	env        map[string]string
}

func (s *spec) allocate(ports *freeport.Pool) error {
	if s.addr != "" {
		return nil
	}
	a, err := ports.Addr()
	s.addr = a
	return err
}

// appGOMAXPROCS is the apps' GOMAXPROCS: 1 unless the harness's
// environment sets it.
func appGOMAXPROCS() string {
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok {
		return v
	}
	return "1"
}

// defaultEnv sets env[k] = v unless the harness's own environment sets k,
// so a knob given to `make bench` reaches the apps.
func defaultEnv(env map[string]string, k, v string) {
	if _, ok := os.LookupEnv(k); !ok {
		env[k] = v
	}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// sleep waits d, failing early when a process exits or ctx ends.
func (r *running) sleep(ctx context.Context, d time.Duration) error {
	exited := make(chan *stack.Proc, len(r.procs))
	stop := make(chan struct{})
	defer close(stop)
	for _, p := range r.procs {
		go func() {
			select {
			case <-p.Done():
				exited <- p
			case <-stop:
			}
		}()
	}
	select {
	case <-time.After(d):
		return nil
	case p := <-exited:
		b, _ := os.ReadFile(p.Log)
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		return fmt.Errorf("%s exited during the run; log %s:\n%s", p.Name, p.Log, b)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop takes the pipeline down in dependency order: streamers (nothing
// half-sent), then collectors (their last acks still reach the queue), then
// the queue itself. It is idempotent.
func (r *running) stop() {
	for _, role := range []string{roleStreamer, roleCollector, "queue"} {
		r.stopRole(role)
	}
}

// stopRole stops the processes of role ("queue": every process that is
// neither a streamer nor a collector), all at once, and waits for them.
func (r *running) stopRole(role string) {
	var g errgroup.Group
	for _, p := range r.procs {
		pr := r.roles[p.Name]
		if pr != roleStreamer && pr != roleCollector {
			pr = "queue"
		}
		if pr == role {
			g.Go(func() error { return p.Stop(20 * time.Second) })
		}
	}
	if err := g.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: stop:", err)
	}
}

// snapshot is one reading of the counters the window is computed from.
type snapshot struct {
	at        time.Time            // the database server's clock
	cpu       map[string]float64   // process name → CPU seconds
	published float64              // streamer_messages_published_total, all streamers
	persisted float64              // collector_records_persisted_total, all collectors
	hist      map[string]histogram // the latency histograms, summed over the apps
	pg        pgCPU
}

// snapshot reads the database clock, then every process's counters at once.
func (r *running) snapshot(ctx context.Context, pgLocal bool) (snapshot, error) {
	s := snapshot{cpu: map[string]float64{}}
	if err := r.pgPool.QueryRow(ctx, sqlDBClock).Scan(&s.at); err != nil {
		return s, fmt.Errorf("database clock: %w", err)
	}
	type reading struct {
		name string
		m    metricSums
		h    map[string]histogram
	}
	readings := make(chan reading, len(r.procs))
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range r.procs {
		g.Go(func() error {
			if r.roles[p.Name] == roleNATS { // natsd serves no /metrics
				sec, _, err := procCPU(p.PID())
				if err != nil {
					return fmt.Errorf("cpu of %s: %w", p.Name, err)
				}
				readings <- reading{name: p.Name, m: metricSums{metricCPU: sec}}
				return nil
			}
			m, err := scrape(gctx, p.URL(), metricCPU, metricPublished, metricPersisted)
			if err != nil {
				return err
			}
			h, err := scrapeHistograms(gctx, p.URL(), scrapedHistograms...)
			if err != nil {
				return err
			}
			readings <- reading{p.Name, m, h}
			return nil
		})
	}
	var pgErr error
	if pgLocal {
		s.pg, pgErr = readPGCPU(ctx, r.pgPool, r.dbName)
	}
	err := g.Wait()
	close(readings)
	s.hist = map[string]histogram{}
	for rd := range readings {
		for n, h := range rd.h {
			s.hist[n] = s.hist[n].add(h)
		}
		s.cpu[rd.name] = rd.m[metricCPU]
		s.published += rd.m[metricPublished]
		s.persisted += rd.m[metricPersisted]
	}
	return s, errors.Join(err, pgErr)
}
