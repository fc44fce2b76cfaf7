// Package migrations holds the database schema as numbered SQL files
// (NNNN_name.up.sql / NNNN_name.down.sql), embedded in the binaries, and a
// small runner that applies them under a PostgreSQL advisory lock so that
// concurrent starters (several pods, a Helm hook and an app) apply each
// migration exactly once.
package migrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed *.sql
var files embed.FS

// lockKey is the advisory lock every runner takes; an arbitrary constant
// ("gputelem" in ASCII).
const lockKey int64 = 0x67707574656c656d

const (
	sqlCreateVersions = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())`
	sqlApplied = `SELECT version FROM schema_migrations ORDER BY version`
	sqlRecord  = `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`
	sqlForget  = `DELETE FROM schema_migrations WHERE version = $1`
	sqlLock    = `SELECT pg_advisory_lock($1)`
	sqlUnlock  = `SELECT pg_advisory_unlock($1)`
)

// Migration is one numbered schema step.
type Migration struct {
	Version int
	Name    string
	Up      string
	Down    string
}

// All returns the embedded migrations in version order.
func All() ([]Migration, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		name := e.Name()
		base, dir, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), ".")
		if !ok || (dir != "up" && dir != "down") {
			return nil, fmt.Errorf("migration %s: want NNNN_name.up.sql or .down.sql", name)
		}
		num, label, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migration %s: version %q is not a number", name, num)
		}
		body, err := files.ReadFile(name)
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

// Up applies every pending migration, each in its own transaction, and
// returns the versions it applied.
func Up(ctx context.Context, conn *pgx.Conn) ([]int, error) {
	return withLock(ctx, conn, func(applied map[int]bool, all []Migration) ([]int, error) {
		var done []int
		for _, m := range all {
			if applied[m.Version] {
				continue
			}
			if err := inTx(ctx, conn, m.Up, sqlRecord, m.Version, m.Name); err != nil {
				return done, fmt.Errorf("migration %04d_%s up: %w", m.Version, m.Name, err)
			}
			done = append(done, m.Version)
		}
		return done, nil
	})
}

// Down reverts the newest `steps` applied migrations (all of them when steps
// is below 1) and returns the versions it reverted.
func Down(ctx context.Context, conn *pgx.Conn, steps int) ([]int, error) {
	return withLock(ctx, conn, func(applied map[int]bool, all []Migration) ([]int, error) {
		var done []int
		for i := len(all) - 1; i >= 0; i-- {
			m := all[i]
			if !applied[m.Version] {
				continue
			}
			if steps > 0 && len(done) == steps {
				break
			}
			if err := inTx(ctx, conn, m.Down, sqlForget, m.Version); err != nil {
				return done, fmt.Errorf("migration %04d_%s down: %w", m.Version, m.Name, err)
			}
			done = append(done, m.Version)
		}
		return done, nil
	})
}

func withLock(ctx context.Context, conn *pgx.Conn, fn func(map[int]bool, []Migration) ([]int, error)) ([]int, error) {
	all, err := All()
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, sqlLock, lockKey); err != nil {
		return nil, fmt.Errorf("take migration lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), sqlUnlock, lockKey) }()
	if _, err := conn.Exec(ctx, sqlCreateVersions); err != nil {
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

func inTx(ctx context.Context, conn *pgx.Conn, body, bookkeeping string, args ...any) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, body); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, bookkeeping, args...)
		return err
	})
}
