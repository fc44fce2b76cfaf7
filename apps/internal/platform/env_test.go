package platform_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/apps/internal/apptest"
	"github.com/gpufleet/telemetry/apps/internal/platform"
)

func TestEnvString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unset", nil, "def"},
		{"empty", map[string]string{"X": ""}, "def"},
		{"blank", map[string]string{"X": "   "}, "def"},
		{"set", map[string]string{"X": "value"}, "value"},
		{"trimmed", map[string]string{"X": "  value \n"}, "value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			require.Equal(t, tt.want, env.String("X", "def"))
			require.NoError(t, env.Err())
		})
	}
}

func TestEnvInt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		value   *string
		want    int
		wantErr string
	}{
		{name: "unset", want: 7},
		{name: "set", value: ptr("42"), want: 42},
		{name: "trimmed", value: ptr(" 42 "), want: 42},
		{name: "low bound", value: ptr("1"), want: 1},
		{name: "high bound", value: ptr("100"), want: 100},
		{name: "below", value: ptr("0"), want: 7, wantErr: "N=0: want 1..100"},
		{name: "above", value: ptr("101"), want: 7, wantErr: "N=101: want 1..100"},
		{name: "not a number", value: ptr("lots"), want: 7, wantErr: `N="lots": not an integer`},
		{name: "a float", value: ptr("1.5"), want: 7, wantErr: `N="1.5": not an integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := map[string]string{}
			if tt.value != nil {
				m["N"] = *tt.value
			}
			env := platform.NewEnvFrom(m)
			require.Equal(t, tt.want, env.Int("N", 7, 1, 100), "a bad value falls back to the default")
			apptest.RequireEnvErr(t, env, tt.wantErr)
		})
	}
}

func TestEnvDurations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		get     func(*platform.Env) time.Duration
		env     map[string]string
		want    time.Duration
		wantErr string
	}{
		{name: "millis default", get: millis, want: 250 * time.Millisecond},
		{name: "millis set", get: millis, env: map[string]string{"POLL_MS": "40"}, want: 40 * time.Millisecond},
		{name: "millis out of range", get: millis, env: map[string]string{"POLL_MS": "0"}, want: 250 * time.Millisecond, wantErr: "POLL_MS=0: want 1..1000"},
		{name: "millis with a unit", get: millis, env: map[string]string{"POLL_MS": "40ms"}, want: 250 * time.Millisecond, wantErr: `POLL_MS="40ms"`},
		{name: "seconds default", get: seconds, want: 30 * time.Second},
		{name: "seconds set", get: seconds, env: map[string]string{"LEASE_S": "5"}, want: 5 * time.Second},
		{name: "seconds out of range", get: seconds, env: map[string]string{"LEASE_S": "3601"}, want: 30 * time.Second, wantErr: "LEASE_S=3601: want 1..3600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			require.Equal(t, tt.want, tt.get(env))
			apptest.RequireEnvErr(t, env, tt.wantErr)
		})
	}
}

func millis(env *platform.Env) time.Duration {
	return env.Millis("POLL_MS", 250*time.Millisecond, 1, 1000)
}

func seconds(env *platform.Env) time.Duration {
	return env.Seconds("LEASE_S", 30*time.Second, 1, 3600)
}

func TestEnvBool(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		def     bool
		want    bool
		wantErr string
	}{
		{name: "unset keeps true", def: true, want: true},
		{name: "unset keeps false", def: false, want: false},
		{name: "false", env: map[string]string{"B": "false"}, def: true, want: false},
		{name: "0", env: map[string]string{"B": "0"}, def: true, want: false},
		{name: "TRUE", env: map[string]string{"B": "TRUE"}, want: true},
		{name: "yes is not a bool", env: map[string]string{"B": "yes"}, def: true, want: true, wantErr: `B="yes": want true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			require.Equal(t, tt.want, env.Bool("B", tt.def))
			apptest.RequireEnvErr(t, env, tt.wantErr)
		})
	}
}

func TestEnvList(t *testing.T) {
	t.Parallel()
	def := []string{"http://127.0.0.1:8082"}
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"unset", nil, def},
		{"empty", map[string]string{"L": ""}, def},
		{"one", map[string]string{"L": "http://a:1"}, []string{"http://a:1"}},
		{"several, trimmed, no empties", map[string]string{"L": " http://a:1 ,, http://b:2,"}, []string{"http://a:1", "http://b:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			require.Equal(t, tt.want, env.List("L", def))
			require.NoError(t, env.Err())
		})
	}
}

func TestEnvOneOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "unset", want: "postgres"},
		{name: "allowed", env: map[string]string{"QUEUE_BACKEND": "memory"}, want: "memory"},
		{name: "case-insensitive", env: map[string]string{"QUEUE_BACKEND": " NATS "}, want: "nats"},
		{name: "unknown", env: map[string]string{"QUEUE_BACKEND": "kafka"}, want: "postgres",
			wantErr: `QUEUE_BACKEND="kafka": want one of postgres, nats, memory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			require.Equal(t, tt.want, env.OneOf("QUEUE_BACKEND", "postgres", "postgres", "nats", "memory"))
			apptest.RequireEnvErr(t, env, tt.wantErr)
		})
	}
}

func TestEnvRequire(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr bool
	}{
		{name: "set", env: map[string]string{"DATABASE_URL": "postgres://db/x"}, want: "postgres://db/x"},
		{name: "unset", wantErr: true},
		{name: "blank", env: map[string]string{"DATABASE_URL": " "}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := platform.NewEnvFrom(tt.env)
			require.Equal(t, tt.want, env.Require("DATABASE_URL"))
			if !tt.wantErr {
				require.NoError(t, env.Err())
				return
			}
			require.EqualError(t, env.Err(), "configuration: DATABASE_URL is required")
		})
	}
}

func TestEnvErrJoinsEveryProblem(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{
		"WORKERS": "0", "ONCE": "maybe", "QUEUE_BACKEND": "kafka", "POLL_MS": "soon", "GOOD": "3",
	})
	_ = env.Int("WORKERS", 2, 1, 64)
	_ = env.Bool("ONCE", false)
	_ = env.OneOf("QUEUE_BACKEND", "postgres", "postgres", "memory")
	_ = env.Millis("POLL_MS", time.Second, 1, 1000)
	_ = env.Require("DATABASE_URL")
	require.Equal(t, 3, env.Int("GOOD", 1, 1, 10))
	env.Fail(errString("PARTITIONS=\"7-3\": start after end"))

	err := env.Err()
	require.Error(t, err)
	for _, name := range []string{"WORKERS", "ONCE", "QUEUE_BACKEND", "POLL_MS", "DATABASE_URL", "PARTITIONS"} {
		require.ErrorContains(t, err, name)
	}
	require.NotContains(t, err.Error(), "GOOD")
	require.ErrorIs(t, err, errString("PARTITIONS=\"7-3\": start after end"), "Fail's error stays in the chain")
}

func TestEnvNoProblems(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"A": "1"})
	_ = env.Int("A", 0, 0, 1)
	_ = env.String("B", "b")
	require.NoError(t, env.Err())
}

func TestEnvFromProcess(t *testing.T) {
	// Not parallel: it sets a process environment variable.
	t.Setenv("PLATFORM_TEST_VALUE", "9")
	env := platform.NewEnv()
	require.Equal(t, 9, env.Int("PLATFORM_TEST_VALUE", 0, 0, 10))
	require.NoError(t, env.Err())
}

func TestLoadCommon(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"LOG_LEVEL": "DEBUG"})
	c := platform.LoadCommon(env, "collector", ":8083")
	require.Equal(t, platform.Common{App: "collector", LogLevel: "debug", HTTPAddr: ":8083", Limits: platform.HTTPLimits{
		ReadHeaderTimeout: platform.DefaultReadHeaderTimeout, ReadTimeout: platform.DefaultReadTimeout,
		WriteTimeout: platform.DefaultWriteTimeout, MaxHeaderBytes: platform.DefaultMaxHeaderBytes}}, c)
	require.NoError(t, env.Err())

	env = platform.NewEnvFrom(map[string]string{"PPROF": "true", "HTTP_READ_TIMEOUT_MS": "5000"})
	c = platform.LoadCommon(env, "collector", ":8083")
	require.Zero(t, c.Limits.WriteTimeout, "a CPU profile must not outlive the write timeout: none with PPROF")
	require.Equal(t, 5*time.Second, c.Limits.ReadTimeout)

	env = platform.NewEnvFrom(map[string]string{"LOG_LEVEL": "loud", "HTTP_ADDR": "127.0.0.1:9"})
	c = platform.LoadCommon(env, "collector", ":8083")
	require.Equal(t, "127.0.0.1:9", c.HTTPAddr)
	require.ErrorContains(t, env.Err(), "LOG_LEVEL")
}

type errString string

func (e errString) Error() string { return string(e) }

func ptr(s string) *string { return &s }

func TestEnvDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string
		want  time.Duration
		bad   bool
	}{
		{"", time.Minute, false},
		{"90s", 90 * time.Second, false},
		{"6h", 6 * time.Hour, false},
		{"7d", 7 * 24 * time.Hour, false},
		{"0", 0, false},
		{"-1h", time.Minute, true},
		{"3 days", time.Minute, true},
		{"400d", time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			vars := map[string]string{}
			if tt.value != "" {
				vars["X_DURATION"] = tt.value
			}
			env := platform.NewEnvFrom(vars)
			got := env.Duration("X_DURATION", time.Minute, 0, 365*24*time.Hour)
			require.Equal(t, tt.want, got)
			if tt.bad {
				require.ErrorContains(t, env.Err(), "X_DURATION")
			} else {
				require.NoError(t, env.Err())
			}
		})
	}
}
