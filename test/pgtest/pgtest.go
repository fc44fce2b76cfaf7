// Package pgtest gives each test its own freshly migrated PostgreSQL
// database. With DATABASE_URL set it creates databases on that server (the
// role needs CREATEDB); without it, it starts (or reuses) the project's local
// cluster in .local/pg through pglocal. Databases are dropped when the test
// ends.
package pgtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpufleet/telemetry/test/pgadmin"
	"github.com/gpufleet/telemetry/test/pglocal"
	"github.com/gpufleet/telemetry/test/stack"
)

// ServerURL returns a connection string to the test server's maintenance
// database: DATABASE_URL when set, else the local cluster (started if needed).
func ServerURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	dir, err := LocalDir()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pglocal.Start(ctx, dir)
	if err != nil {
		t.Fatalf("pgtest: start local postgres: %v", err)
	}
	return c.URL("postgres")
}

// LocalDir is the project's local cluster folder: <module root>/.local/pg.
func LocalDir() (string, error) {
	root, err := stack.Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".local", "pg"), nil
}

// NewDatabase creates an empty database, applies every migration, and
// returns its connection string. The database is dropped at cleanup.
func NewDatabase(t testing.TB) string {
	t.Helper()
	server, name := newDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, err := pgadmin.Migrate(ctx, server, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// NewEmptyDatabase creates a database with no schema (for migration tests).
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	server, name := newDatabase(t)
	dsn, err := pgadmin.WithDatabase(server, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// newDatabase creates a database with a fresh name, dropped at cleanup, and
// returns the server's connection string and the name.
func newDatabase(t testing.TB) (server, name string) {
	t.Helper()
	server = ServerURL(t)
	name = "t_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgadmin.CreateDatabase(ctx, server, name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pgadmin.DropDatabase(ctx, server, name); err != nil {
			t.Logf("pgtest: %v", err)
		}
	})
	return server, name
}

// NewPool returns a pool on a fresh migrated database, closed at cleanup.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return Pool(t, NewDatabase(t))
}

// Pool opens a pool on dsn, closed at cleanup.
func Pool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// CrashablePool opens a pool on dsn, closed at cleanup, and a crash function
// that cuts the pool off as the death of its process would: from then on it
// opens no connection, and every connection it had is terminated with
// pg_terminate_backend. Whatever the pool's users had not committed is lost,
// and they can never reach the database again. Harnesses use it to crash a
// component without calling its Close.
func CrashablePool(t testing.TB, dsn string) (*pgxpool.Pool, func(t testing.TB)) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgtest: pool config: %v", err)
	}
	app := "pgtest-crashable-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	var crashed atomic.Bool
	cfg.BeforeConnect = func(context.Context, *pgx.ConnConfig) error {
		if crashed.Load() {
			return errors.New("pgtest: the pool's process has crashed")
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	crash := func(t testing.TB) {
		t.Helper()
		crashed.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		admin, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("pgtest: crash: connect: %v", err)
		}
		defer admin.Close(ctx)
		// The timeout makes pg_terminate_backend wait until each backend has
		// exited, so nothing it was doing commits afterwards. A backend that
		// exits by itself meanwhile makes it return false, and one whose
		// connection was being opened as the crash began appears after the
		// listing: so terminate until none is left.
		for range 20 {
			var left int
			err = admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT pg_terminate_backend(pid, 10000))
FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&left)
			if err != nil {
				t.Fatalf("pgtest: crash: terminate the pool's backends: %v", err)
			}
			err = admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&left)
			if err != nil {
				t.Fatalf("pgtest: crash: count the pool's backends: %v", err)
			}
			if left == 0 {
				return
			}
		}
		t.Fatalf("pgtest: crash: the pool's backends outlived 20 rounds of pg_terminate_backend")
	}
	return pool, crash
}
