package backend_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/gpufleet/telemetry/adapters/mqhttp"
	"github.com/gpufleet/telemetry/adapters/postgres"
	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/apps/internal/backend"
	"github.com/gpufleet/telemetry/apps/internal/platform"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/migrations"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/freeport"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// unreachable is a well-formed DSN nothing listens on: fx.ValidateApp never
// connects.
const unreachable = "postgres://x@127.0.0.1:1/x"

func common(env *platform.Env) fx.Option {
	return platform.Module(platform.LoadCommon(env, "backendtest", "127.0.0.1:0"))
}

var useQueue = fx.Invoke(func(ports.Queue, ports.Publisher, ports.Consumer) {})

var useStore = fx.Invoke(func(ports.TelemetryStore, ports.TelemetryWriter, ports.TelemetryReader) {})

// checkNames collects the readiness checks' names once the app is built.
func checkNames(names *[]string) fx.Option {
	return fx.Invoke(fx.Annotate(func(cs []platform.Check) {
		for _, c := range cs {
			*names = append(*names, c.Name)
		}
	}, fx.ParamTags(`group:"checks"`)))
}

func TestQueueClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value           string
		writer, readers bool
		// notBuilt: the backend may not be compiled in yet; then the app
		// must fail to build with an error naming the variable and value.
		notBuilt bool
	}{
		{value: "", writer: true, readers: true},
		{value: "postgres", writer: true},
		{value: "postgres", readers: true},
		{value: "POSTGRES", writer: true, readers: true},
		{value: "memory", writer: true, readers: true},
		{value: "nats", writer: true, readers: true, notBuilt: true},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(map[string]string{"QUEUE_BACKEND": tt.value})
			err := fx.ValidateApp(common(env), backend.QueueClient(env, tt.writer, tt.readers), useQueue)
			require.NoError(t, env.Err())
			if tt.notBuilt && err != nil {
				require.ErrorContains(t, err, "QUEUE_BACKEND=nats")
				return
			}
			require.NoError(t, err)
		})
	}
}

func TestQueueClientHTTPConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		env             map[string]string
		writer, readers bool
		want            mqhttp.ClientConfig
	}{
		{name: "streamer defaults", writer: true, want: mqhttp.ClientConfig{WriterURL: "http://127.0.0.1:8081", PublishOnce: true,
			Stream: true, StreamWindow: backend.DefaultStreamerWindow}},
		{name: "streamer over requests", writer: true, env: map[string]string{"STREAMER_TRANSPORT": "request", "STREAMER_WINDOW": "64"},
			want: mqhttp.ClientConfig{WriterURL: "http://127.0.0.1:8081", PublishOnce: true}},
		{name: "streamer window", writer: true, env: map[string]string{"STREAMER_WINDOW": "64"},
			want: mqhttp.ClientConfig{WriterURL: "http://127.0.0.1:8081", PublishOnce: true, Stream: true, StreamWindow: 64}},
		{name: "collector defaults", readers: true, want: mqhttp.ClientConfig{ReaderURLs: []string{"http://127.0.0.1:8082"}}},
		{name: "configured", writer: true, readers: true,
			env: map[string]string{"MQ_WRITER_URL": "http://mqwriter:8081", "MQ_READER_URLS": "http://mqreader-0:8082, http://mqreader-1:8082"},
			want: mqhttp.ClientConfig{WriterURL: "http://mqwriter:8081", ReaderURLs: []string{"http://mqreader-0:8082", "http://mqreader-1:8082"}, PublishOnce: true,
				Stream: true, StreamWindow: backend.DefaultStreamerWindow}},
		{name: "streamer token", writer: true, env: map[string]string{"MQ_PUBLISH_TOKEN": "p-0123456789abcdef", "MQ_CONSUME_TOKEN": "c-0123456789abcdef"},
			want: mqhttp.ClientConfig{WriterURL: "http://127.0.0.1:8081", PublishOnce: true, PublishToken: "p-0123456789abcdef",
				Stream: true, StreamWindow: backend.DefaultStreamerWindow}},
		{name: "collector token", readers: true, env: map[string]string{"MQ_PUBLISH_TOKEN": "p-0123456789abcdef", "MQ_CONSUME_TOKEN": "c-0123456789abcdef"},
			want: mqhttp.ClientConfig{ReaderURLs: []string{"http://127.0.0.1:8082"}, ConsumeToken: "c-0123456789abcdef"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			var cfg mqhttp.ClientConfig
			var checks []string
			// fx.New builds the client without connecting to anything.
			app := fx.New(common(env), backend.QueueClient(env, tt.writer, tt.readers), fx.Populate(&cfg), checkNames(&checks), fx.NopLogger)
			require.NoError(t, app.Err())
			require.NoError(t, env.Err())
			require.NotNil(t, cfg.Metrics, "retries are counted in the app's registry")
			cfg.Metrics = nil
			require.Equal(t, tt.want, cfg, "an app reaches only the side it uses; the streamer's publishes are retried by the streamer alone")
			require.Equal(t, []string{"queue"}, checks, "/readyz checks the queue")
		})
	}
}

func TestMemoryQueueIsOneQueue(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"QUEUE_BACKEND": "memory", "HTTP_ADDR": "127.0.0.1:0"})
	var pub ports.Publisher
	var con ports.Consumer
	app := fxtest.New(t, platform.Module(platform.LoadCommon(env, "backendtest", ":0")), backend.QueueClient(env, true, true), fx.Populate(&pub, &con))
	app.RequireStart()
	_, err := pub.Publish(t.Context(), domain.TelemetryTopic, []ports.OutgoingMessage{{Payload: []byte(`{"gpu_uuid":"GPU-1"}`)}})
	require.NoError(t, err)
	l, err := con.Lease(t.Context(), ports.LeaseRequest{Topic: domain.TelemetryTopic, ConsumerID: "c", Max: 1, LeaseDuration: time.Minute})
	require.NoError(t, err)
	require.Len(t, l.Messages, 1, "the streamer and collector sides share one in-process queue")
	app.RequireStop()
}

func TestStore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string
		env   map[string]string
	}{
		{value: "", env: map[string]string{"DATABASE_URL": unreachable}},
		{value: "postgres", env: map[string]string{"DATABASE_URL": unreachable}},
		{value: "Memory"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			m := map[string]string{"STORE_BACKEND": tt.value}
			for k, v := range tt.env {
				m[k] = v
			}
			env := platform.NewEnvFrom(m)
			require.NoError(t, fx.ValidateApp(common(env), backend.Store(env, backend.APIProfile), useStore))
			require.NoError(t, env.Err())
		})
	}
}

func TestUnknownBackendNamesTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		build   func(*platform.Env) fx.Option
		wantErr []string
	}{
		{name: "queue", env: map[string]string{"QUEUE_BACKEND": "kafka"},
			build:   func(env *platform.Env) fx.Option { return backend.QueueClient(env, true, true) },
			wantErr: []string{`QUEUE_BACKEND="kafka"`, "postgres, nats, memory"}},
		{name: "store", env: map[string]string{"STORE_BACKEND": "mongo", "DATABASE_URL": unreachable},
			build:   func(env *platform.Env) fx.Option { return backend.Store(env, backend.APIProfile) },
			wantErr: []string{`STORE_BACKEND="mongo"`, "postgres, memory"}},
		{name: "both", env: map[string]string{"STORE_BACKEND": "mongo", "QUEUE_BACKEND": "kafka", "DATABASE_URL": unreachable},
			build: func(env *platform.Env) fx.Option {
				return fx.Options(backend.Store(env, backend.CollectorProfile), backend.QueueClient(env, false, true))
			},
			wantErr: []string{"STORE_BACKEND", "QUEUE_BACKEND"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			_ = tt.build(env)
			err := env.Err()
			require.Error(t, err, "platform.Main refuses to start")
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}

func TestDatabaseConfig(t *testing.T) {
	t.Parallel()
	apptest.RunEnvCases(t, []apptest.EnvCase[error]{
		{Name: "valid", Env: map[string]string{"DATABASE_URL": unreachable, "DB_MAX_CONNS": "4", "MIGRATE_ON_START": "false"}},
		{Name: "no DATABASE_URL", Env: map[string]string{}, WantErr: "DATABASE_URL is required"},
		{Name: "DB_MAX_CONNS out of range", Env: map[string]string{"DATABASE_URL": unreachable, "DB_MAX_CONNS": "0"}, WantErr: "DB_MAX_CONNS=0"},
		{Name: "MIGRATE_ON_START not a bool", Env: map[string]string{"DATABASE_URL": unreachable, "MIGRATE_ON_START": "sometimes"}, WantErr: "MIGRATE_ON_START"},
		{Name: "timeouts", Env: map[string]string{"DATABASE_URL": unreachable, "DB_STATEMENT_TIMEOUT": "3s", "DB_LOCK_TIMEOUT": "0", "DB_IDLE_IN_TRANSACTION_TIMEOUT": "1m"}},
		{Name: "bad timeout", Env: map[string]string{"DATABASE_URL": unreachable, "DB_LOCK_TIMEOUT": "soon"}, WantErr: "DB_LOCK_TIMEOUT"},
		{Name: "read url", Env: map[string]string{"DATABASE_URL": unreachable, "DATABASE_READ_URL": unreachable}},
	}, func(env *platform.Env) error {
		return fx.ValidateApp(common(env), backend.Database(env, backend.APIProfile), useStore)
	})
}

// startDatabase starts the Database option on the environment vars and
// returns its store, pool and "database" readiness check.
func startDatabase(t *testing.T, vars map[string]string) (ports.TelemetryStore, *pgxpool.Pool, platform.Check) {
	t.Helper()
	vars["HTTP_ADDR"] = "127.0.0.1:0"
	env := platform.NewEnvFrom(vars)
	var store ports.TelemetryStore
	var pool *pgxpool.Pool
	var checks []platform.Check
	app := fxtest.New(t, platform.Module(platform.LoadCommon(env, "backendtest", ":0")), backend.Database(env, backend.APIProfile),
		fx.Populate(&store, &pool),
		fx.Invoke(fx.Annotate(func(cs []platform.Check) { checks = cs }, fx.ParamTags(`group:"checks"`))))
	require.NoError(t, env.Err())
	app.RequireStart()
	t.Cleanup(app.RequireStop)
	require.Len(t, checks, 1)
	require.Equal(t, "database", checks[0].Name)
	return store, pool, checks[0]
}

func reason(err error) string {
	nr, ok := errors.AsType[*ports.NotReadyError](err)
	if !ok {
		return ""
	}
	return nr.Reason
}

func write(store ports.TelemetryStore) error {
	v := 1.0
	p := domain.Point{Timestamp: time.Now(), MetricName: "m", GPUUUID: "GPU-1", Value: &v}
	_, err := store.WriteBatch(context.Background(), []domain.Record{{Point: p, MsgUUID: domain.MessageID("t", "k")}})
	return err
}

// TestMigrationsOnlyWhenAsked: by default an app never migrates (the
// migration Job does) and is not ready on an old schema; MIGRATE_ON_START
// migrates in the background and the app becomes ready by itself.
func TestMigrationsOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		store, _, check := startDatabase(t, map[string]string{"DATABASE_URL": pgtest.NewEmptyDatabase(t)})
		err := check.Fn(t.Context())
		require.Equal(t, fmt.Sprintf("schema version 0, this build needs %d: run the migrations", migrations.Latest()), reason(err))
		require.Error(t, write(store), "no migrations, no telemetry table")
	})
	t.Run("MIGRATE_ON_START", func(t *testing.T) {
		t.Parallel()
		store, _, check := startDatabase(t, map[string]string{"DATABASE_URL": pgtest.NewEmptyDatabase(t), "MIGRATE_ON_START": "true"})
		require.EventuallyWithT(t, func(c *assert.CollectT) { require.NoError(c, check.Fn(t.Context())) }, 30*time.Second, 50*time.Millisecond)
		require.NoError(t, write(store))
	})
}

// TestSchemaNewerThanTheBuild: a database migrated by a newer build makes
// the app not ready, with a reason that says so.
func TestSchemaNewerThanTheBuild(t *testing.T) {
	t.Parallel()
	_, pool, check := startDatabase(t, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)})
	require.NoError(t, check.Fn(t.Context()))
	_, err := pool.Exec(t.Context(), `INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future')`, migrations.Latest()+1)
	require.NoError(t, err)
	err = check.Fn(t.Context())
	require.ErrorIs(t, err, postgres.ErrSchemaNewer)
	require.Equal(t, fmt.Sprintf("schema version %d is newer than this build (%d): upgrade the app", migrations.Latest()+1, migrations.Latest()), reason(err))
}

// TestStartsWhileTheDatabaseIsDown: the app starts with nothing listening
// at DATABASE_URL, is not ready with a reason naming no host, and becomes
// ready by itself once the database is reachable (a TCP forwarder appears
// on the address).
func TestStartsWhileTheDatabaseIsDown(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	target, err := url.Parse(dsn)
	require.NoError(t, err)
	addr, err := freeport.Addr() // nothing listens there yet, and no connection's source port takes it
	require.NoError(t, err)
	via := *target
	via.Host = addr

	_, pool, check := startDatabase(t, map[string]string{"DATABASE_URL": via.String()})
	err = check.Fn(t.Context())
	require.Equal(t, "database unreachable", reason(err))
	require.ErrorIs(t, err, ports.ErrUnavailable)

	forward(t, addr, target.Host)
	require.EventuallyWithT(t, func(c *assert.CollectT) { require.NoError(c, check.Fn(t.Context())) }, 10*time.Second, 50*time.Millisecond)

	// The sessions carry the API's timeouts as connection parameters.
	for name, want := range map[string]string{"statement_timeout": "15s", "lock_timeout": "1s",
		"idle_in_transaction_session_timeout": "5s", "application_name": "apigw"} {
		var got string
		require.NoError(t, pool.QueryRow(t.Context(), "SELECT current_setting($1)", name).Scan(&got))
		require.Equal(t, want, got, name)
	}
}

// forward listens on addr and copies every connection to and from to,
// until the test ends.
func forward(t *testing.T, addr, to string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				_ = in.Close()
				continue
			}
			go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
			go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
		}
	}()
}

func TestHostname(t *testing.T) {
	t.Parallel()
	require.NotEmpty(t, backend.Hostname())
}
