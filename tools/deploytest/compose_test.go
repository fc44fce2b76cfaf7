package deploytest

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

// appPorts are the apps' HTTP ports (HTTP_ADDR), fixed by the spec.
var appPorts = map[string]string{"apigw": "8080", "mqwriter": "8081", "mqreader": "8082", "collector": "8083", "streamer": "8084"}

// dbApps read DATABASE_URL.
var dbApps = map[string]bool{"migrate": true, "mqwriter": true, "mqreader": true, "collector": true, "apigw": true}

// loadCompose loads deployments/docker-compose.yaml the way `docker compose`
// does (interpolation, merge keys, schema validation, relative paths
// resolved against the file's directory) with an empty environment, so the
// defaults in the file are what is checked.
func loadCompose(t *testing.T, content []byte) *types.Project {
	t.Helper()
	return loadComposeEnv(t, content, types.Mapping{})
}

// loadComposeEnv is loadCompose with the given environment (as make up's
// --env-file supplies it).
func loadComposeEnv(t *testing.T, content []byte, env types.Mapping) *types.Project {
	t.Helper()
	dir, err := filepath.Abs(repo("deployments"))
	require.NoError(t, err)
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yaml"), Content: content}},
		Environment: env,
	}, func(o *loader.Options) { o.ResolvePaths = true })
	require.NoError(t, err)
	return p
}

func composeFile(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(repo("deployments", "docker-compose.yaml"))
	require.NoError(t, err)
	return b
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, composeFile(t))
	require.ElementsMatch(t, []string{"postgres", "migrate", "mqwriter", "mqreader", "collector", "streamer", "apigw"}, p.ServiceNames())

	pg := p.Services["postgres"]
	require.True(t, strings.HasPrefix(pg.Image, "postgres:"), "the official PostgreSQL image, not Bitnami's: %s", pg.Image)
	require.NotNil(t, pg.HealthCheck)

	image := p.Services["migrate"].Image
	for name, s := range p.Services {
		if name == "postgres" {
			continue
		}
		require.Equal(t, image, s.Image, "%s runs the pipeline image", name)
		require.NotNil(t, s.Build, name)
		dockerfile := filepath.Join(s.Build.Context, s.Build.Dockerfile)
		_, err := os.Stat(dockerfile)
		require.NoError(t, err, "%s builds from %s", name, dockerfile)
		require.Equal(t, "/app/bin/"+name, s.Command[0], name)
		require.True(t, s.ReadOnly, "%s read-only root", name)
		require.Contains(t, s.CapDrop, "ALL", name)

		if dbApps[name] {
			u, err := url.Parse(deref(s.Environment["DATABASE_URL"]))
			require.NoError(t, err, name)
			require.Equal(t, "postgres:5432", u.Host, "%s reaches the postgres service", name)
			require.Equal(t, pg.Environment["POSTGRES_USER"], ptr(u.User.Username()), name)
			pw, _ := u.User.Password()
			require.Equal(t, pg.Environment["POSTGRES_PASSWORD"], ptr(pw), name)
		} else {
			require.NotContains(t, s.Environment, "DATABASE_URL", name)
		}
		port, isServer := appPorts[name]
		if !isServer {
			continue
		}
		require.Equal(t, ":"+port, deref(s.Environment["HTTP_ADDR"]), name)
		require.NotNil(t, s.HealthCheck, name)
		require.Equal(t, "CMD", s.HealthCheck.Test[0], "%s: exec-form health check (no shell in the image)", name)
		require.Equal(t, "/app/bin/healthcheck", s.HealthCheck.Test[1], name)
		hc, err := url.Parse(s.HealthCheck.Test[2])
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1:"+port, hc.Host, name)
		require.Len(t, s.Ports, 1, name)
		require.EqualValues(t, mustAtoi(t, port), s.Ports[0].Target, name)
	}

	require.Equal(t, "http://mqwriter:"+appPorts["mqwriter"], deref(p.Services["streamer"].Environment["MQ_WRITER_URL"]))
	require.Equal(t, "http://mqreader:"+appPorts["mqreader"], deref(p.Services["collector"].Environment["MQ_READER_URLS"]))
	require.Equal(t, "0-255", deref(p.Services["mqreader"].Environment["PARTITIONS"]), "the only reader owns every partition")
	require.NotNil(t, p.Services["mqreader"].StopGracePeriod, "readers drain on SIGTERM")
}

// TestComposePortsOnLoopback: every published port is bound to 127.0.0.1,
// so the stack is reachable from this host only.
func TestComposePortsOnLoopback(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, composeFile(t))
	published := 0
	for name, s := range p.Services {
		for _, port := range s.Ports {
			require.Equal(t, "127.0.0.1", port.HostIP, "%s publishes %s on every interface", name, port.Published)
			published++
		}
	}
	require.Equal(t, len(appPorts)+1, published, "the apps' ports and PostgreSQL's")
}

// TestComposeQueueTokens: the queue's servers accept the tokens its clients
// send, taken from the environment (make up's generated env file); none is
// baked into the file, so without them the servers refuse to start.
func TestComposeQueueTokens(t *testing.T) {
	t.Parallel()
	env := func(p *types.Project, svc, key string) string { return deref(p.Services[svc].Environment[key]) }
	p := loadComposeEnv(t, composeFile(t), types.Mapping{"MQ_PUBLISH_TOKEN": "pub-token", "MQ_CONSUME_TOKEN": "con-token"})
	require.Equal(t, "pub-token", env(p, "mqwriter", "MQ_PUBLISH_TOKENS"))
	require.Equal(t, "pub-token", env(p, "streamer", "MQ_PUBLISH_TOKEN"))
	require.Equal(t, "con-token", env(p, "mqreader", "MQ_CONSUME_TOKENS"))
	require.Equal(t, "con-token", env(p, "collector", "MQ_CONSUME_TOKEN"))
	for _, s := range p.Services {
		require.NotEqual(t, "none", deref(s.Environment["MQ_AUTH"]), "%s: no queue without authentication", s.Name)
	}
	bare := loadCompose(t, composeFile(t))
	for _, k := range [][2]string{{"mqwriter", "MQ_PUBLISH_TOKENS"}, {"mqreader", "MQ_CONSUME_TOKENS"}} {
		require.Empty(t, env(bare, k[0], k[1]), "%s: no default token in the file", k[0])
	}
}

// TestComposeStartOrder: PostgreSQL healthy -> migrate completed -> the
// database apps; the queue clients wait for a healthy queue.
func TestComposeStartOrder(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, composeFile(t))
	dep := func(svc, on, cond string) {
		t.Helper()
		d, ok := p.Services[svc].DependsOn[on]
		require.True(t, ok, "%s depends on %s", svc, on)
		require.Equal(t, cond, d.Condition, "%s waits for %s", svc, on)
	}
	dep("migrate", "postgres", types.ServiceConditionHealthy)
	for _, s := range []string{"mqwriter", "mqreader", "apigw"} {
		dep(s, "migrate", types.ServiceConditionCompletedSuccessfully)
	}
	dep("streamer", "mqwriter", types.ServiceConditionHealthy)
	dep("collector", "mqreader", types.ServiceConditionHealthy)
	// Every app that uses the database comes after the migration.
	for name := range dbApps {
		if name != "migrate" {
			require.True(t, after(p, name, "migrate"), "%s starts after migrate", name)
		}
	}
	// The graph is acyclic (compose refuses cycles; checked here so a
	// failing test says which).
	for _, name := range p.ServiceNames() {
		require.False(t, after(p, name, name), "%s depends on itself through a cycle", name)
	}
}

// after reports whether svc (transitively) depends on dep. Depth-bounded so
// a cycle ends the search instead of recursing forever.
func after(p *types.Project, svc, dep string) bool {
	return afterN(p, svc, dep, len(p.Services))
}

func afterN(p *types.Project, svc, dep string, depth int) bool {
	if depth < 0 {
		return false
	}
	for d := range p.Services[svc].DependsOn {
		if d == dep || afterN(p, d, dep, depth-1) {
			return true
		}
	}
	return false
}

// TestComposeStreamsTheShippedCSV: the streamer reads the repository's one
// copy of the CSV, mounted read-only at the path it is told.
func TestComposeStreamsTheShippedCSV(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, composeFile(t))
	s := p.Services["streamer"]
	require.Len(t, s.Volumes, 1)
	v := s.Volumes[0]
	require.True(t, v.ReadOnly)
	csvPath := deref(s.Environment["STREAMER_CSV_PATH"])
	rel, err := filepath.Rel(v.Target, csvPath)
	require.NoError(t, err)
	require.False(t, strings.HasPrefix(rel, ".."), "STREAMER_CSV_PATH %s is inside the mount %s", csvPath, v.Target)
	want, err := filepath.Abs(repo("deployments", "data", "dcgm_metrics_20250718_134233.csv"))
	require.NoError(t, err)
	require.Equal(t, want, filepath.Join(v.Source, rel))
	_, err = os.Stat(want)
	require.NoError(t, err)
}

// TestComposeLoaderValidates proves the loader is strict: each mutation of
// the real file must be refused.
func TestComposeLoaderValidates(t *testing.T) {
	t.Parallel()
	orig := string(composeFile(t))
	tests := []struct{ name, from, to, want string }{
		{"unknown service key", "    stop_grace_period: 45s", "    stop_grace_periood: 45s", "stop_grace_periood"},
		{"dependency on a missing service", "      mqreader:\n        condition: service_healthy", "      mqreadr:\n        condition: service_healthy", "mqreadr"},
		{"bad condition", "condition: service_completed_successfully", "condition: service_done", "depends_on.migrate.condition"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, orig, tc.from)
			dir, err := filepath.Abs(repo("deployments"))
			require.NoError(t, err)
			_, err = loader.LoadWithContext(context.Background(), types.ConfigDetails{
				WorkingDir:  dir,
				ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yaml"), Content: []byte(strings.Replace(orig, tc.from, tc.to, 1))}},
				Environment: types.Mapping{},
			})
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func ptr(s string) *string { return &s }

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		require.True(t, c >= '0' && c <= '9', s)
		n = n*10 + int(c-'0')
	}
	return n
}
