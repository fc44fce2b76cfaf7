// Package pgtest gives each test its own freshly migrated PostgreSQL
// database: a copy of a migrated template (newMigratedDatabase). With
// DATABASE_URL set it creates databases on that server (the role needs
// CREATEDB); without it, it starts (or reuses) the project's local cluster
// in .local/pg through pglocal. Databases are dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gpufleet/telemetry/migrations"
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

// NewDatabase creates a database holding every migration and returns its
// connection string. The database is dropped at cleanup.
func NewDatabase(t testing.TB) string {
	t.Helper()
	dsn, err := newMigratedDatabase(t, ServerURL(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// NewEmptyDatabase creates a database with no schema (for migration tests).
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	dsn, err := newDatabase(t, ServerURL(t), "")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// newMigratedDatabase copies the migrated template of this build's
// migrations instead of migrating every database it makes: a test run makes
// about 240 of them. The first copy on a server finds no template (SQLSTATE
// 3D000), makes it (ensureTemplate) and copies it then.
func newMigratedDatabase(t testing.TB, server string) (string, error) {
	template, err := templateName()
	if err != nil {
		return "", err
	}
	dsn, err := newDatabase(t, server, template)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != sqlstateUndefinedDatabase {
		return dsn, err // made, or failed for another reason than a missing template
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ensureTemplate(ctx, server, template); err != nil {
		return "", err
	}
	return newDatabase(t, server, template)
}

// newDatabase creates a database with a fresh name on server, a copy of
// template ("" for the server's default), dropped at cleanup, and returns
// its connection string.
func newDatabase(t testing.TB, server, template string) (string, error) {
	t.Helper()
	name := freshName("t_")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgadmin.CreateDatabaseFrom(ctx, server, name, template); err != nil {
		return "", err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pgadmin.DropDatabase(ctx, server, name); err != nil {
			t.Logf("pgtest: %v", err)
		}
	})
	return pgadmin.WithDatabase(server, name)
}

func freshName(prefix string) string {
	return prefix + strings.ReplaceAll(uuid.NewString(), "-", "")
}

// sqlstateUndefinedDatabase (invalid_catalog_name) is what CREATE DATABASE
// answers when its template does not exist.
const sqlstateUndefinedDatabase = "3D000"

// templatePrefix starts the name of every migrated template pgtest makes.
const templatePrefix = "pgtest_tmpl_"

// ensureTemplate makes database name hold every migration, unless it
// exists: the template newMigratedDatabase copies. Its name carries a hash
// of the migrations (templateName), so a changed migration makes a new
// template; the old one stays on the server (about 8 MB) until it is dropped
// by hand or the local cluster is removed. Concurrent test processes may
// each build one under a name of their own; the first rename wins and the
// others drop theirs.
func ensureTemplate(ctx context.Context, server, name string) error {
	if ok, err := pgadmin.DatabaseExists(ctx, server, name); err != nil || ok {
		return err
	}
	build := freshName("pgtest_build_")
	if err := pgadmin.CreateDatabase(ctx, server, build); err != nil {
		return err
	}
	if _, err := pgadmin.Migrate(ctx, server, build); err != nil {
		_ = pgadmin.DropDatabase(context.WithoutCancel(ctx), server, build)
		return err
	}
	if err := pgadmin.RenameDatabase(ctx, server, build, name); err != nil {
		_ = pgadmin.DropDatabase(context.WithoutCancel(ctx), server, build)
		if ok, _ := pgadmin.DatabaseExists(ctx, server, name); !ok {
			return err
		}
		// another process made it first
	}
	return nil
}

// templateName is templatePrefix and a hash of the embedded migrations.
func templateName() (string, error) {
	all, err := migrations.All()
	if err != nil {
		return "", fmt.Errorf("load migrations: %w", err)
	}
	h := sha256.New()
	for _, m := range all {
		fmt.Fprintf(h, "%d\x00%s\x00%s\x00", m.Version, m.Name, m.Up)
	}
	return templatePrefix + hex.EncodeToString(h.Sum(nil))[:16], nil
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
