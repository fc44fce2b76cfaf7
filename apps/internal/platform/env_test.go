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
	apptest.RunEnvCases(t, []apptest.EnvCase[string]{
		{Name: "unset", Want: "def"},
		{Name: "empty", Env: x(""), Want: "def"},
		{Name: "blank", Env: x("   "), Want: "def"},
		{Name: "set", Env: x("value"), Want: "value"},
		{Name: "trimmed", Env: x("  value \n"), Want: "value"},
	}, func(env *platform.Env) string { return env.String("X", "def") })
}

func TestEnvInt(t *testing.T) {
	t.Parallel()
	apptest.RunEnvCases(t, []apptest.EnvCase[int]{
		{Name: "unset", Want: 7},
		{Name: "set", Env: x("42"), Want: 42},
		{Name: "trimmed", Env: x(" 42 "), Want: 42},
		{Name: "low bound", Env: x("1"), Want: 1},
		{Name: "high bound", Env: x("100"), Want: 100},
		{Name: "below", Env: x("0"), WantErr: "X=0: want 1..100"},
		{Name: "above", Env: x("101"), WantErr: "X=101: want 1..100"},
		{Name: "not a number", Env: x("lots"), WantErr: `X="lots": not an integer`},
		{Name: "a float", Env: x("1.5"), WantErr: `X="1.5": not an integer`},
	}, func(env *platform.Env) int { return env.Int("X", 7, 1, 100) })
}

func TestEnvMillis(t *testing.T) {
	t.Parallel()
	apptest.RunEnvCases(t, []apptest.EnvCase[time.Duration]{
		{Name: "unset", Want: 250 * time.Millisecond},
		{Name: "set", Env: x("40"), Want: 40 * time.Millisecond},
		{Name: "out of range", Env: x("0"), WantErr: "X=0: want 1..1000"},
		{Name: "with a unit", Env: x("40ms"), WantErr: `X="40ms"`},
	}, func(env *platform.Env) time.Duration { return env.Millis("X", 250*time.Millisecond, 1, 1000) })
}

func TestEnvSeconds(t *testing.T) {
	t.Parallel()
	apptest.RunEnvCases(t, []apptest.EnvCase[time.Duration]{
		{Name: "unset", Want: 30 * time.Second},
		{Name: "set", Env: x("5"), Want: 5 * time.Second},
		{Name: "out of range", Env: x("3601"), WantErr: "X=3601: want 1..3600"},
	}, func(env *platform.Env) time.Duration { return env.Seconds("X", 30*time.Second, 1, 3600) })
}

func TestEnvDuration(t *testing.T) {
	t.Parallel()
	apptest.RunEnvCases(t, []apptest.EnvCase[time.Duration]{
		{Name: "unset", Want: time.Minute},
		{Name: "seconds", Env: x("90s"), Want: 90 * time.Second},
		{Name: "hours", Env: x("6h"), Want: 6 * time.Hour},
		{Name: "days", Env: x("7d"), Want: 7 * 24 * time.Hour},
		{Name: "zero", Env: x("0"), Want: 0},
		{Name: "negative", Env: x("-1h"), WantErr: `X="-1h"`},
		{Name: "words", Env: x("3 days"), WantErr: `X="3 days"`},
		{Name: "above the bound", Env: x("400d"), WantErr: `X="400d"`},
	}, func(env *platform.Env) time.Duration { return env.Duration("X", time.Minute, 0, 365*24*time.Hour) })
}

func TestEnvBool(t *testing.T) {
	t.Parallel()
	apptest.RunEnvCases(t, []apptest.EnvCase[bool]{
		{Name: "unset keeps true", Want: true},
		{Name: "false", Env: x("false"), Want: false},
		{Name: "0", Env: x("0"), Want: false},
		{Name: "TRUE", Env: x("TRUE"), Want: true},
		{Name: "yes is not a bool", Env: x("yes"), WantErr: `X="yes": want true or false`},
	}, func(env *platform.Env) bool { return env.Bool("X", true) })
	require.False(t, platform.NewEnvFrom(nil).Bool("X", false), "unset keeps false")
}

func TestEnvList(t *testing.T) {
	t.Parallel()
	def := []string{"http://127.0.0.1:8082"}
	apptest.RunEnvCases(t, []apptest.EnvCase[[]string]{
		{Name: "unset", Want: def},
		{Name: "empty", Env: x(""), Want: def},
		{Name: "one", Env: x("http://a:1"), Want: []string{"http://a:1"}},
		{Name: "several, trimmed, no empties", Env: x(" http://a:1 ,, http://b:2,"), Want: []string{"http://a:1", "http://b:2"}},
	}, func(env *platform.Env) []string { return env.List("X", def) })
}

func TestEnvOneOf(t *testing.T) {
	t.Parallel()
	apptest.RunEnvCases(t, []apptest.EnvCase[string]{
		{Name: "unset", Want: "postgres"},
		{Name: "allowed", Env: x("memory"), Want: "memory"},
		{Name: "case-insensitive", Env: x(" NATS "), Want: "nats"},
		{Name: "unknown", Env: x("kafka"), WantErr: `X="kafka": want one of postgres, nats, memory`},
	}, func(env *platform.Env) string { return env.OneOf("X", "postgres", "postgres", "nats", "memory") })
}

func TestEnvRequire(t *testing.T) {
	t.Parallel()
	apptest.RunEnvCases(t, []apptest.EnvCase[string]{
		{Name: "set", Env: x("postgres://db/x"), Want: "postgres://db/x"},
		{Name: "unset", WantErr: "configuration: X is required"},
		{Name: "blank", Env: x(" "), WantErr: "configuration: X is required"},
	}, func(env *platform.Env) string { return env.Require("X") })
}

// TestEnvBadValueFallsBackToDefault: a read whose value is refused records
// the error and returns the default, so one run reports every problem.
func TestEnvBadValueFallsBackToDefault(t *testing.T) {
	t.Parallel()
	env := platform.NewEnvFrom(map[string]string{"I": "0", "M": "40ms", "S": "3601", "D": "-1h", "B": "yes", "O": "kafka", "R": " "})
	require.Equal(t, 7, env.Int("I", 7, 1, 100))
	require.Equal(t, 250*time.Millisecond, env.Millis("M", 250*time.Millisecond, 1, 1000))
	require.Equal(t, 30*time.Second, env.Seconds("S", 30*time.Second, 1, 3600))
	require.Equal(t, time.Minute, env.Duration("D", time.Minute, 0, time.Hour))
	require.True(t, env.Bool("B", true))
	require.Equal(t, "postgres", env.OneOf("O", "postgres", "postgres", "memory"))
	require.Empty(t, env.Require("R"))
	err := env.Err()
	for _, name := range []string{"I=", "M=", "S=", "D=", "B=", "O=", "R is required"} {
		require.ErrorContains(t, err, name)
	}
}

// x is an environment that sets X alone.
func x(value string) map[string]string { return map[string]string{"X": value} }

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
