package k8s_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/pgqueue"
	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/migrations"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// appRoles are the login roles the umbrella chart declares as CloudNativePG
// managed roles (tp.roleApps) and files/grants.sql gives rights to.
var appRoles = []string{"telemetry_mqwriter", "telemetry_mqreader", "telemetry_collector", "telemetry_apigw"}

// TestGrantsLetEachAppDoItsWorkAndNoMore sets PostgreSQL up the way the
// chart does in cnpg mode (a non-superuser owner that migrates, one login
// role per app, the collector a member of the owner as CloudNativePG's
// inRoles makes it), applies files/grants.sql as the owner twice (every
// upgrade runs it again), then runs the apps' real adapters under their
// roles: each can do its work, and is refused (42501) what it must not do.
func TestGrantsLetEachAppDoItsWorkAndNoMore(t *testing.T) {
	ctx := t.Context()
	grants, err := os.ReadFile(repoPath(t, "deployments", "helm", "telemetry-pipeline", "files", "grants.sql"))
	require.NoError(t, err)

	server := pgtest.ServerURL(t)
	admin, err := pgx.Connect(ctx, server)
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	owner := "t_owner_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	// Roles are the server's, not one database's: drop them after the
	// database (cleanups run last-in first-out).
	t.Cleanup(func() {
		for _, r := range append([]string{owner}, appRoles...) {
			_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize())
		}
	})
	for _, r := range appRoles {
		_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+r) // left over by a killed run
		_, err := admin.Exec(ctx, "CREATE ROLE "+r+" LOGIN")
		require.NoError(t, err)
	}
	_, err = admin.Exec(ctx, "CREATE ROLE "+owner+" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB")
	require.NoError(t, err)
	_, err = admin.Exec(ctx, "GRANT "+owner+" TO telemetry_collector")
	require.NoError(t, err)

	dsn := pgtest.NewEmptyDatabase(t)
	dbName := strings.TrimPrefix(mustURL(t, dsn).Path, "/")
	_, err = admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", dbName, owner))
	require.NoError(t, err)
	// As CloudNativePG's owner has it (PostgreSQL 15+: pg_database_owner
	// owns public; older servers gave it to the bootstrap superuser).
	func() {
		conn, err := pgx.Connect(ctx, withUser(t, dsn, "postgres", ""))
		require.NoError(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "ALTER SCHEMA public OWNER TO "+owner)
		require.NoError(t, err)
	}()

	ownerConn, err := pgx.Connect(ctx, withUser(t, dsn, owner, ""))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ownerConn.Close(context.Background()) })
	_, err = migrations.Up(ctx, ownerConn)
	require.NoError(t, err)
	for range 2 {
		require.NoError(t, migrations.Exec(ctx, ownerConn, string(grants)), "grants.sql as the owner (idempotent)")
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool := func(role, params string) string { return withUser(t, dsn, role, params) }
	denied := func(t *testing.T, dsn, sql, what string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		require.NoError(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		requireSQLState(t, err, "42501", what)
	}

	// mqwriter publishes.
	w, err := pgqueue.NewWriter(pgtest.Pool(t, pool("telemetry_mqwriter", "")), pgqueue.DefaultWriterConfig(), quiet, nil)
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	point := domain.Point{Timestamp: time.Now().UTC().Truncate(time.Millisecond), MetricName: "DCGM_FI_DEV_GPU_UTIL",
		GPUUUID: "GPU-" + uuid.NewString(), Hostname: "node-1", ModelName: "H100", Value: new(float64)}
	payload, err := json.Marshal(point)
	require.NoError(t, err)
	res, err := w.Publish(ctx, domain.TelemetryTopic, []ports.OutgoingMessage{{Payload: payload}, {Payload: payload}})
	require.NoError(t, err)
	require.Equal(t, 2, res.Accepted)
	require.NoError(t, w.Close(ctx))
	writer := pool("telemetry_mqwriter", "")
	denied(t, writer, "DELETE FROM queue_messages", "mqwriter deletes messages")
	denied(t, writer, "SELECT count(*) FROM telemetry_series", "mqwriter reads telemetry")
	denied(t, writer, "INSERT INTO dead_letters (msg_uuid, topic, payload, reason) VALUES (gen_random_uuid(), 't', '', '')", "mqwriter dead-letters")

	// mqreader leases, records the counts of deliveries released without an
	// ack, and at the delivery limit moves the messages to dead_letters
	// (UPDATE, DELETE and INSERT: migration 0003's columns).
	all := domain.PartitionRange{First: 0, Last: domain.NumPartitions - 1}
	r, err := pgqueue.NewReader(pgtest.Pool(t, pool("telemetry_mqreader", "")),
		pgqueue.ReaderConfig{Range: &all, RefillInterval: 5 * time.Millisecond, MaxDeliveries: 2}, quiet, nil)
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	leaseAll := func() domain.Lease {
		var lease domain.Lease
		require.Eventually(t, func() bool {
			lease, err = r.Lease(ctx, ports.LeaseRequest{Topic: domain.TelemetryTopic, ConsumerID: "c1", Max: 10, LeaseDuration: time.Minute})
			require.NoError(t, err)
			return len(lease.Messages) == 2
		}, 30*time.Second, 10*time.Millisecond, "the reader's role reads the queue")
		return lease
	}
	for i := range 2 {
		lease := leaseAll()
		require.NoError(t, r.Release(ctx, ports.LeaseRef{Topic: domain.TelemetryTopic, ConsumerID: "c1", LeaseID: lease.ID, Reason: "store down"}))
		if i == 0 {
			require.Eventually(t, func() bool {
				var recorded int
				require.NoError(t, ownerConn.QueryRow(ctx, "SELECT count(*) FROM queue_messages WHERE deliveries = 1 AND last_error = 'store down'").Scan(&recorded))
				return recorded == 2
			}, 30*time.Second, 10*time.Millisecond, "the reader's role recorded the delivery counts")
		}
	}
	var dead int
	require.Eventually(t, func() bool {
		require.NoError(t, ownerConn.QueryRow(ctx, "SELECT count(*) FROM dead_letters WHERE source = 'queue' AND deliveries = 2").Scan(&dead))
		return dead == 2
	}, 30*time.Second, 10*time.Millisecond, "the reader's role moved the messages at their limit to dead_letters")
	require.NoError(t, r.Close(ctx))
	var left int
	require.NoError(t, ownerConn.QueryRow(ctx, "SELECT count(*) FROM queue_messages").Scan(&left))
	require.Zero(t, left, "the reader's role deleted the dead-lettered messages")
	reader := pool("telemetry_mqreader", "")
	denied(t, reader, "INSERT INTO telemetry_series (gpu_uuid, metric_name, attrs_key, gpu_index, first_seen, last_seen) VALUES ('g', 'm', gen_random_uuid(), 0, now(), now())", "mqreader writes telemetry")
	denied(t, reader, "TRUNCATE queue_messages", "mqreader truncates")
	denied(t, reader, "INSERT INTO queue_messages (topic, msg_uuid, payload, partition_key) VALUES ('t', gen_random_uuid(), '{}', 0)", "mqreader publishes")

	// The collector stores and maintains (creates and drops day partitions).
	collector := postgres.NewTelemetryStoreWith(pgtest.Pool(t, pool("telemetry_collector", "")), quiet, postgres.Options{Retention: 7 * 24 * time.Hour})
	old := point
	old.Timestamp = time.Now().Add(-3 * 24 * time.Hour)
	records := []domain.Record{{Point: point, MsgUUID: uuid.New()}, {Point: old, MsgUUID: uuid.New()}}
	_, err = collector.WriteBatch(ctx, records)
	require.NoError(t, err, "the collector's role stores telemetry and creates partitions")
	require.NoError(t, collector.WriteDeadLetters(ctx, []domain.DeadLetter{{MsgUUID: uuid.New(), Topic: domain.TelemetryTopic, Payload: []byte("{}"), Reason: "test"}}))
	later := postgres.NewTelemetryStoreWith(pgtest.Pool(t, pool("telemetry_collector", "")), quiet,
		postgres.Options{Retention: 24 * time.Hour, Now: func() time.Time { return time.Now().Add(24 * time.Hour) }})
	rep, err := later.Maintain(ctx, time.Now().Add(24*time.Hour))
	require.NoError(t, err, "the collector's role maintains the partitions")
	require.True(t, rep.Ran)
	require.GreaterOrEqual(t, rep.PartitionsDropped, 1, "the collector's role dropped an expired day partition")

	// apigw reads, and only reads.
	api := postgres.NewTelemetryStore(pgtest.Pool(t, pool("telemetry_apigw", "default_transaction_read_only=on")), quiet)
	gpus, err := api.ListGPUs(ctx)
	require.NoError(t, err, "apigw's role reads")
	require.NotEmpty(t, gpus)
	_, err = api.WriteBatch(ctx, records)
	requireSQLState(t, err, "25006", "apigw's sessions are read-only (its URL)")
	apigw := pool("telemetry_apigw", "")
	denied(t, apigw, "INSERT INTO gpus (uuid, gpu_index, first_seen, last_seen) VALUES ('x', 0, now(), now())", "apigw writes, even in a read-write session")
	denied(t, apigw, "SELECT * FROM schema_migrations", "apigw reads the migrations' bookkeeping")
	denied(t, apigw, "DELETE FROM dead_letters", "apigw deletes dead letters")

	for _, role := range []string{"telemetry_mqwriter", "telemetry_mqreader", "telemetry_apigw"} {
		denied(t, pool(role, ""), "CREATE TABLE intruder (id int)", role+" creates tables")
		denied(t, pool(role, ""), "DROP TABLE telemetry_series", role+" drops tables")
	}
}

func requireSQLState(t *testing.T, err error, code, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%s: want SQLSTATE %s, got %v", what, code, err)
	require.Equal(t, code, pgErr.Code, "%s: %s", what, pgErr.Message)
}

func mustURL(t *testing.T, dsn string) *url.URL {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	return u
}

// withUser is dsn logging in as role (the test cluster trusts 127.0.0.1),
// with extra query parameters.
func withUser(t *testing.T, dsn, role, params string) string {
	t.Helper()
	u := mustURL(t, dsn)
	u.User = url.User(role)
	if params != "" {
		if u.RawQuery != "" {
			u.RawQuery += "&"
		}
		u.RawQuery += params
	}
	return u.String()
}
