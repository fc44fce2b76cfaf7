package stack

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// Services are the apps an end-to-end test runs over one database: each
// started with its DATABASE_URL and its log in one folder. At the test's
// end, once every app has stopped, any data race a race-built app reported
// fails the test, and a failed test prints the tail of every app's log.
type Services struct {
	t      testing.TB
	binDir string
	DSN    string
	Pool   *pgxpool.Pool // on DSN, for the test's own queries
	LogDir string
	// Env is added to every app's environment (before the app's own).
	Env     map[string]string
	started []string
}

// NewServices runs apps from binDir on the database dsn for the rest of t.
func NewServices(t testing.TB, binDir, dsn string) *Services {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	require.NoError(t, err)
	s := &Services{t: t, binDir: binDir, DSN: dsn, Pool: pool, LogDir: t.TempDir(), Env: map[string]string{}}
	// Registered before any app's stop, so it runs after all of them.
	t.Cleanup(func() {
		pool.Close()
		reports, err := RaceReports(s.LogDir)
		if err != nil {
			t.Errorf("read service logs: %v", err)
		}
		for _, r := range reports {
			t.Errorf("data race in a service: %s", r)
		}
		if t.Failed() {
			for _, name := range s.started {
				t.Logf("%s log (tail):\n%s", name, tail(filepath.Join(s.LogDir, name+".log")))
			}
		}
	})
	return s
}

// Start runs the app name with env (and DATABASE_URL and Env) until the
// test ends, as StartApp does.
func (s *Services) Start(name string, env map[string]string) *Proc {
	s.t.Helper()
	all := map[string]string{"DATABASE_URL": s.DSN}
	maps.Copy(all, s.Env)
	maps.Copy(all, env)
	if !slices.Contains(s.started, name) {
		s.started = append(s.started, name)
	}
	return StartApp(s.t, s.binDir, name, s.LogDir, all)
}

// Count runs a query that returns one integer.
func (s *Services) Count(query string) int {
	s.t.Helper()
	var n int
	require.NoError(s.t, s.Pool.QueryRow(context.Background(), query).Scan(&n))
	return n
}
