// Package migrations holds the database schema as numbered SQL files
// (NNNN_name.up.sql / NNNN_name.down.sql), embedded in the binaries, and a
// small runner that applies them under a PostgreSQL advisory lock so that
// concurrent starters (a Helm Job, `make migrate-up`, an app with
// MIGRATE_ON_START) apply each migration exactly once.
//
// The runner never blocks writers for long: it waits for the advisory lock
// only up to Runner.LockWait, runs every migration with lock_timeout (a DDL
// statement queued behind a long query would otherwise queue every writer
// behind itself) and retries one that hit it. A file whose first lines hold
// the marker `-- migrate:no-transaction` runs outside a transaction,
// statement by statement, for what PostgreSQL refuses inside one
// (CREATE INDEX CONCURRENTLY): such a file must be safe to run again after
// a failure halfway (IF NOT EXISTS, DROP INDEX CONCURRENTLY IF EXISTS first).
package migrations

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gpufleet/telemetry/internal/retry"
)

//go:embed *.sql
var files embed.FS

// LockKey is the advisory lock every runner takes; an arbitrary constant
// ("gputelem" in ASCII).
const LockKey int64 = 0x67707574656c656d

// NoTransaction is the marker that makes a migration file run outside a
// transaction.
const NoTransaction = "-- migrate:no-transaction"

const (
	sqlCreateVersions = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())`
	sqlApplied = `SELECT version FROM schema_migrations ORDER BY version`
	sqlRecord  = `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`
	sqlForget  = `DELETE FROM schema_migrations WHERE version = $1`
	sqlTryLock = `SELECT pg_try_advisory_lock($1)`
	sqlUnlock  = `SELECT pg_advisory_unlock($1)`
	// sqlCurrent is the schema version a database is at (0: none applied).
	sqlCurrent = `SELECT coalesce(max(version), 0) FROM schema_migrations`
)

// Migration is one numbered schema step.
type Migration struct {
	Version int
	Name    string
	Up      string
	Down    string
}

// Runner defaults.
const (
	DefaultLockWait    = 2 * time.Minute
	DefaultLockTimeout = 5 * time.Second
	DefaultAttempts    = 8
)

// Runner applies migrations; the zero value uses the embedded files and the
// defaults.
type Runner struct {
	// LockWait bounds the wait for the runners' advisory lock (another
	// runner is applying migrations); default DefaultLockWait.
	LockWait time.Duration
	// LockTimeout is lock_timeout for every statement of a migration;
	// default DefaultLockTimeout.
	LockTimeout time.Duration
	// Attempts is how often a migration that hit lock_timeout is tried,
	// with a growing pause between tries; default DefaultAttempts.
	Attempts int
	// FS holds the migration files; default the embedded ones.
	FS fs.FS
	// Poll is the pause between lock attempts and the first pause between
	// tries of a migration; default 250ms.
	Poll time.Duration
}

// withDefaults fills the zero fields; a negative one counts as zero.
func (r Runner) withDefaults() Runner {
	r.LockWait = cmp.Or(max(r.LockWait, 0), DefaultLockWait)
	r.LockTimeout = cmp.Or(max(r.LockTimeout, 0), DefaultLockTimeout)
	r.Attempts = cmp.Or(max(r.Attempts, 0), DefaultAttempts)
	r.Poll = cmp.Or(max(r.Poll, 0), 250*time.Millisecond)
	if r.FS == nil {
		r.FS = files
	}
	return r
}

// All returns the embedded migrations in version order.
func All() ([]Migration, error) { return load(files) }

// Latest is the newest embedded migration's version: the schema this build
// is written for. An app refuses (is not ready) when the database is at a
// newer version.
func Latest() int {
	all, err := All()
	if err != nil || len(all) == 0 {
		return 0
	}
	return all[len(all)-1].Version
}

// Current returns the version the database on q is at (0 when no
// migration was applied or the bookkeeping table does not exist yet).
func Current(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (int, error) {
	var v int
	err := q.QueryRow(ctx, sqlCurrent).Scan(&v)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "42P01" { // undefined_table
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		base, dir, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), ".")
		if !ok || (dir != "up" && dir != "down") {
			return nil, fmt.Errorf("migration %s: want NNNN_name.up.sql or .down.sql", name)
		}
		num, label, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migration %s: version %q is not a number", name, num)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", name, err)
		}
		m := byVersion[v]
		if m == nil {
			m = &Migration{Version: v, Name: label}
			byVersion[v] = m
		}
		if dir == "up" {
			m.Up = string(body)
		} else {
			m.Down = string(body)
		}
	}
	out := make([]Migration, 0, len(byVersion))
	for _, m := range byVersion {
		if m.Up == "" || m.Down == "" {
			return nil, fmt.Errorf("migration %04d_%s: needs both up and down files", m.Version, m.Name)
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Up applies every pending embedded migration with the default Runner.
func Up(ctx context.Context, conn *pgx.Conn) ([]int, error) { return Runner{}.Up(ctx, conn) }

// Down reverts the newest `steps` migrations with the default Runner.
func Down(ctx context.Context, conn *pgx.Conn, steps int) ([]int, error) {
	return Runner{}.Down(ctx, conn, steps)
}

// Up applies every pending migration, each in its own transaction (or
// statement by statement when marked NoTransaction), and returns the
// versions it applied.
func (r Runner) Up(ctx context.Context, conn *pgx.Conn) ([]int, error) {
	r = r.withDefaults()
	return r.withLock(ctx, conn, func(applied map[int]bool, all []Migration) ([]int, error) {
		var done []int
		for _, m := range all {
			if applied[m.Version] {
				continue
			}
			if err := r.apply(ctx, conn, m.Up, sqlRecord, m.Version, m.Name); err != nil {
				return done, fmt.Errorf("migration %04d_%s up: %w", m.Version, m.Name, err)
			}
			done = append(done, m.Version)
		}
		return done, nil
	})
}

// Down reverts the newest `steps` applied migrations (all of them when steps
// is below 1) and returns the versions it reverted.
func (r Runner) Down(ctx context.Context, conn *pgx.Conn, steps int) ([]int, error) {
	r = r.withDefaults()
	return r.withLock(ctx, conn, func(applied map[int]bool, all []Migration) ([]int, error) {
		var done []int
		for i := len(all) - 1; i >= 0; i-- {
			m := all[i]
			if !applied[m.Version] {
				continue
			}
			if steps > 0 && len(done) == steps {
				break
			}
			if err := r.apply(ctx, conn, m.Down, sqlForget, m.Version); err != nil {
				return done, fmt.Errorf("migration %04d_%s down: %w", m.Version, m.Name, err)
			}
			done = append(done, m.Version)
		}
		return done, nil
	})
}

// ErrLockWait is returned when another runner held the migration lock for
// all of Runner.LockWait.
var ErrLockWait = errors.New("migration lock held by another runner")

// lock polls pg_try_advisory_lock until it succeeds or LockWait passes: a
// blocking pg_advisory_lock would wait forever behind a stuck runner.
func (r Runner) lock(ctx context.Context, conn *pgx.Conn) error {
	deadline := time.Now().Add(r.LockWait)
	for {
		var got bool
		if err := conn.QueryRow(ctx, sqlTryLock, LockKey).Scan(&got); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if got {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("take migration lock: %w for %s", ErrLockWait, r.LockWait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("take migration lock: %w", ctx.Err())
		case <-time.After(r.Poll):
		}
	}
}

func (r Runner) withLock(ctx context.Context, conn *pgx.Conn, fn func(map[int]bool, []Migration) ([]int, error)) ([]int, error) {
	all, err := load(r.FS)
	if err != nil {
		return nil, err
	}
	if err := r.lock(ctx, conn); err != nil {
		return nil, err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), sqlUnlock, LockKey) }()
	if err := r.retry(ctx, func() error {
		_, err := conn.Exec(ctx, sqlCreateVersions)
		return err
	}); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	rows, err := conn.Query(ctx, sqlApplied)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	applied := make(map[int]bool, len(versions))
	for _, v := range versions {
		applied[v] = true
	}
	return fn(applied, all)
}

// isLockTimeout reports SQLSTATE 55P03 (lock_not_available): lock_timeout
// struck.
func isLockTimeout(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && pgErr.Code == "55P03"
}

// retry runs fn up to Attempts times while it fails with a lock timeout,
// pausing about Poll, 2·Poll, 4·Poll … (at most 10 s, with the module's
// jitter) between tries; any other error ends it at once.
func (r Runner) retry(ctx context.Context, fn func() error) error {
	tries := 0
	_, err := retry.Do(ctx, retry.Policy{Initial: r.Poll, Max: 10 * time.Second, MaxTries: r.Attempts},
		func() (struct{}, error) {
			tries++
			err := fn()
			if err != nil && !isLockTimeout(err) {
				return struct{}{}, retry.Permanent(err)
			}
			return struct{}{}, err
		})
	if isLockTimeout(err) {
		return fmt.Errorf("lock_timeout %s hit %d times: %w", r.LockTimeout, tries, err)
	}
	return err
}

// apply runs one migration body and its bookkeeping statement, retrying on
// lock timeouts.
func (r Runner) apply(ctx context.Context, conn *pgx.Conn, body, bookkeeping string, args ...any) error {
	if IsNoTransaction(body) {
		return r.applyOutsideTx(ctx, conn, body, bookkeeping, args...)
	}
	lockTimeout := strconv.FormatInt(r.LockTimeout.Milliseconds(), 10)
	return r.retry(ctx, func() error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// A migration may run long (statement_timeout off) but never
			// waits long for a lock. The session may carry an app's
			// timeouts (MIGRATE_ON_START): SET LOCAL overrides them here only.
			if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = 0"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = "+lockTimeout); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, body); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, bookkeeping, args...)
			return err
		})
	})
}

// applyOutsideTx runs a NoTransaction migration statement by statement with
// session-level timeouts (restored afterwards), then records it. A failed
// statement is retried on its own; statements before it stay applied, which
// is why such files must be safe to run again.
func (r Runner) applyOutsideTx(ctx context.Context, conn *pgx.Conn, body, bookkeeping string, args ...any) error {
	lockTimeout := strconv.FormatInt(r.LockTimeout.Milliseconds(), 10)
	restore := context.WithoutCancel(ctx)
	var oldStatement, oldLock string
	if err := conn.QueryRow(ctx, "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')").Scan(&oldStatement, &oldLock); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		return err
	}
	defer func() { _, _ = conn.Exec(restore, "SELECT set_config('statement_timeout', $1, false)", oldStatement) }()
	if _, err := conn.Exec(ctx, "SET lock_timeout = "+lockTimeout); err != nil {
		return err
	}
	defer func() { _, _ = conn.Exec(restore, "SELECT set_config('lock_timeout', $1, false)", oldLock) }()
	for i, stmt := range Statements(body) {
		if err := r.retry(ctx, func() error {
			// The simple protocol runs exactly this one statement outside
			// any transaction block.
			_, err := conn.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
			return err
		}); err != nil {
			return fmt.Errorf("statement %d: %w", i+1, err)
		}
	}
	_, err := conn.Exec(ctx, bookkeeping, args...)
	return err
}

// IsNoTransaction reports whether a migration body carries the
// NoTransaction marker on a line of its leading comment block.
func IsNoTransaction(body string) bool {
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == NoTransaction {
			return true
		}
		if line != "" && !strings.HasPrefix(line, "--") {
			return false
		}
	}
	return false
}

// Statements splits a NoTransaction body at lines that end with ';'
// (comment-only and blank chunks dropped). Such files hold plain DDL: a
// statement with a ';' at the end of an inner line (a function body) does
// not belong in one.
func Statements(body string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		for line := range strings.Lines(s) {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "--") {
				out = append(out, s)
				return
			}
		}
	}
	for line := range strings.Lines(body) {
		cur.WriteString(line)
		if strings.HasSuffix(strings.TrimSpace(line), ";") && !strings.HasPrefix(strings.TrimSpace(line), "--") {
			flush()
		}
	}
	flush()
	return out
}
