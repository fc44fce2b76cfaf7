package backend

import (
	"time"

	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/apps/internal/platform"
)

// Profile is one app's database settings: its pool size and the
// server-side timeouts of its sessions, sent as connection parameters
// (statement_timeout, lock_timeout, idle_in_transaction_session_timeout).
// The defaults suit what the app does; DB_MAX_CONNS, DB_STATEMENT_TIMEOUT,
// DB_LOCK_TIMEOUT and DB_IDLE_IN_TRANSACTION_TIMEOUT override them (0
// leaves the server's setting). The pool sizes add up to the connection
// budget in docs/kubernetes.md ("Database"), which test/k8s checks against
// max_connections at the HPAs' maximum replicas.
type Profile struct {
	// App is the application_name the sessions show in pg_stat_activity.
	App string
	// MaxConns is the default pool size (DB_MAX_CONNS).
	MaxConns int
	// Timeouts are the default server-side limits.
	Timeouts postgres.Timeouts
}

// The apps' profiles. The API's are the shortest: a page query is
// milliseconds, and an NDJSON stream (one statement) ends at its
// statement_timeout. Lock waits are short everywhere, so no statement queues
// behind DDL for long (and no DDL queues writers behind itself).
var (
	// APIProfile: apigw, read-only queries and streams.
	APIProfile = Profile{App: "apigw", MaxConns: 8, Timeouts: postgres.Timeouts{
		Statement: 15 * time.Second, Lock: time.Second, IdleInTransaction: 5 * time.Second}}
	// WriterProfile: mqwriter, group-commit INSERTs (its flush timeout is 30 s).
	WriterProfile = Profile{App: "mqwriter", MaxConns: 4, Timeouts: postgres.Timeouts{
		Statement: 20 * time.Second, Lock: 2 * time.Second, IdleInTransaction: 10 * time.Second}}
	// ReaderProfile: mqreader, refills and batched DELETEs (query timeout 30 s).
	ReaderProfile = Profile{App: "mqreader", MaxConns: 4, Timeouts: postgres.Timeouts{
		Statement: 25 * time.Second, Lock: 2 * time.Second, IdleInTransaction: 10 * time.Second}}
	// CollectorProfile: collector, batch writes plus the maintenance job
	// (rollups in chunks, partition DDL that must give up rather than
	// queue the writers).
	CollectorProfile = Profile{App: "collector", MaxConns: 4, Timeouts: postgres.Timeouts{
		Statement: 60 * time.Second, Lock: 2 * time.Second, IdleInTransaction: 30 * time.Second}}
	// PipelineProfile: the single-process app does all of the above.
	PipelineProfile = Profile{App: "pipeline", MaxConns: 16, Timeouts: postgres.Timeouts{
		Statement: 60 * time.Second, Lock: 2 * time.Second, IdleInTransaction: 30 * time.Second}}
)

// config reads DATABASE_URL, DATABASE_READ_URL and the overrides.
func (p Profile) config(env *platform.Env) postgres.Config {
	const day = 24 * time.Hour
	return postgres.Config{
		DatabaseURL:     env.Require("DATABASE_URL"),
		ReadURL:         env.String("DATABASE_READ_URL", ""),
		MaxConns:        int32(env.Int("DB_MAX_CONNS", p.MaxConns, 1, 1000)),
		ApplicationName: p.App,
		Timeouts: postgres.Timeouts{
			Statement:         env.Duration("DB_STATEMENT_TIMEOUT", p.Timeouts.Statement, 0, day),
			Lock:              env.Duration("DB_LOCK_TIMEOUT", p.Timeouts.Lock, 0, day),
			IdleInTransaction: env.Duration("DB_IDLE_IN_TRANSACTION_TIMEOUT", p.Timeouts.IdleInTransaction, 0, day),
		},
	}
}
