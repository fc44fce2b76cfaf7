package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpufleet/telemetry/test/pgadmin"
	"github.com/gpufleet/telemetry/test/pglocal"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// SQL of the harness's bookkeeping (the floor's statements are in floor.go).
const (
	// sqlDBClock is the server's clock: the measured window is taken on the
	// clock that stamps ingested_at.
	sqlDBClock = `SELECT clock_timestamp()`

	// sqlWindowLatency counts the samples the streamer stamped in [$1, $2)
	// (read after the pipeline stopped, so all of them have committed). The
	// store keeps no ingestion time (ADR 0004), so the publish → persisted
	// latency columns are 0 here; the collector's metrics carry it. A BRIN
	// range scan of telemetry_samples on ts.
	sqlWindowLatency = `SELECT count(*), 0::float8, 0::float8, 0::float8
FROM telemetry_samples
WHERE ts >= $1 AND ts < $2`

	// sqlCountQueue is the queue's backlog: a sequential or index-only scan
	// of queue_messages.
	sqlCountQueue = `SELECT count(*) FROM queue_messages`

	// sqlCountTelemetry counts every stored row (index-only scan of the
	// primary key when the visibility map allows, else sequential).
	sqlCountTelemetry = `SELECT count(*) FROM telemetry_samples`

	// sqlServerProcesses lists the server's processes that count for a
	// run: the backends of database $1 (the apps' connections and
	// autovacuum workers on its tables) and the background processes that
	// serve every database (WAL writer, checkpointer, background writer).
	sqlServerProcesses = `SELECT pid, coalesce(datname = $1, false)
FROM pg_stat_activity
WHERE datname = $1 OR backend_type IN ('walwriter', 'checkpointer', 'background writer', 'autovacuum launcher')`

	sqlDatabaseExists = `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`
	sqlVersion        = `SELECT current_setting('server_version')`
	sqlSetting        = `SELECT current_setting($1)`
	sqlBackendPID     = `SELECT pg_backend_pid()`
)

// server is the PostgreSQL server the benchmark databases live on.
type server struct {
	admin    string // connection string of the maintenance database
	localDir string // the local cluster's folder when the harness started it; "" otherwise
}

// openServer picks DATABASE_URL (the role must be allowed to create
// databases) or starts the project's local cluster (.local/pg).
func openServer(ctx context.Context) (*server, error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return &server{admin: u}, nil
	}
	dir, err := pgtest.LocalDir()
	if err != nil {
		return nil, fmt.Errorf("local cluster: %w", err)
	}
	_, wasRunning := pglocal.Running(dir)
	c, err := pglocal.Start(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("start local postgres: %w", err)
	}
	s := &server{admin: c.URL("postgres")}
	if !wasRunning {
		s.localDir = dir
	}
	return s, nil
}

// close stops the local cluster when the harness started it.
func (s *server) close() error {
	if s.localDir == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return pglocal.Stop(ctx, s.localDir)
}

// fresh drops database name if it exists, creates it, applies the
// migrations, checkpoints, and returns its connection string. The
// checkpoint writes out what earlier runs left dirty, so a run does not pay
// for its predecessors' WAL (a latency run after minutes at full rate had
// a p50 2-3× that of the same run on a quiet server).
func (s *server) fresh(ctx context.Context, name string) (string, error) {
	if err := s.drop(ctx, name); err != nil {
		return "", err
	}
	if err := pgadmin.CreateDatabase(ctx, s.admin, name); err != nil {
		return "", err
	}
	dsn, err := pgadmin.Migrate(ctx, s.admin, name)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	return dsn, nil
}

// drop removes database name, disconnecting its sessions.
func (s *server) drop(ctx context.Context, name string) error {
	return pgadmin.DropDatabase(ctx, s.admin, name)
}

// version is the server's version string.
// durability reads the server settings a commit's cost depends on.
func (s *server) durability(ctx context.Context) map[string]string {
	out := map[string]string{}
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return out
	}
	defer conn.Close(ctx)
	for _, name := range []string{"fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "commit_delay"} {
		var v string
		if err := conn.QueryRow(ctx, sqlSetting, name).Scan(&v); err == nil {
			out[name] = v
		}
	}
	return out
}

func (s *server) version(ctx context.Context) string {
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return "unknown"
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, sqlVersion).Scan(&v); err != nil {
		return "unknown"
	}
	return v
}

// pgCPU is one reading of the server's CPU, per process: the backends of
// the run's database, and the shared background processes.
type pgCPU struct {
	backends   map[int]float64
	background map[int]float64
}

// pgLocal reports whether the server runs on this machine, where its
// processes' CPU can be read from /proc: the backend serving pool must be a
// local process named postgres.
func pgLocal(ctx context.Context, pool *pgxpool.Pool) (bool, string) {
	var pid int
	if err := pool.QueryRow(ctx, sqlBackendPID).Scan(&pid); err != nil {
		return false, fmt.Sprintf("backend pid: %v", err)
	}
	if c := procComm(pid); c != "postgres" {
		return false, fmt.Sprintf("backend pid %d is not a local postgres process (remote server or another PID namespace)", pid)
	}
	return true, ""
}

// readPGCPU reads the CPU of the server's processes that serve database db.
// Processes that vanished between the listing and the read are skipped.
func readPGCPU(ctx context.Context, pool *pgxpool.Pool, db string) (pgCPU, error) {
	rows, err := pool.Query(ctx, sqlServerProcesses, db)
	if err != nil {
		return pgCPU{}, fmt.Errorf("list server processes: %w", err)
	}
	type proc struct {
		pid  int
		ours bool
	}
	procs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (proc, error) {
		var p proc
		err := r.Scan(&p.pid, &p.ours)
		return p, err
	})
	if err != nil {
		return pgCPU{}, fmt.Errorf("list server processes: %w", err)
	}
	out := pgCPU{backends: map[int]float64{}, background: map[int]float64{}}
	for _, p := range procs {
		s, _, err := procCPU(p.pid)
		if err != nil {
			continue
		}
		if p.ours {
			out.backends[p.pid] = s
		} else {
			out.background[p.pid] = s
		}
	}
	return out, nil
}

// cpuDelta is the CPU used between two readings of a set of processes; a
// process absent from before started in between and counts whole. A
// process that ended in between is lost (its last seconds are unknowable).
func cpuDelta(before, after map[int]float64) float64 {
	var d float64
	for pid, s := range after {
		d += s - before[pid]
	}
	return d
}
