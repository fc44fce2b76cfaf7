package deploytest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/subrequests/lint"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"
)

// apps are the binaries the image must hold: the pipeline's services and
// the migration runner (not the one-process pipeline, natsd or the demo
// exporter, which are for running locally), plus the compose health probe.
var apps = []string{"mqwriter", "mqreader", "collector", "streamer", "apigw", "migrate", "partition-controller"}

func repo(elem ...string) string {
	return filepath.Join(append([]string{"..", ".."}, elem...)...)
}

func readDockerfile(t *testing.T) []byte {
	t.Helper()
	dt, err := os.ReadFile(repo("deployments", "docker", "Dockerfile"))
	require.NoError(t, err)
	return dt
}

// stubResolver answers base-image lookups without a registry: the lint
// needs an image config, not the image.
type stubResolver struct{}

func (stubResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	return ref, digest.FromString(ref), []byte(`{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}`), nil
}

// lintDockerfile runs BuildKit's Dockerfile lint on dt, resolving base images with
// the stub.
func lintDockerfile(t *testing.T, dt []byte) *lint.LintResults {
	t.Helper()
	sm := llb.NewSourceMap(nil, "Dockerfile", "Dockerfile", dt)
	sm.Definition = &llb.Definition{} // no build context: a lint needs none
	res, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{
		SourceMap:    sm,
		MetaResolver: stubResolver{},
	})
	require.NoError(t, err)
	return res
}

// TestDockerfileLint runs BuildKit's Dockerfile checks (the rules of
// `docker build --check`: casing, JSON args, undefined variables, secrets in
// ARG/ENV, legacy syntax, ...): any warning fails.
func TestDockerfileLint(t *testing.T) {
	t.Parallel()
	dt := readDockerfile(t)
	res := lintDockerfile(t, dt)
	require.Nil(t, res.Error, "build error: %v", res.Error)
	for _, w := range res.Warnings {
		t.Errorf("%s: %s (%s)", w.RuleName, w.Detail, w.URL)
	}
}

// TestDockerfileRulesCatchMistakes proves the lint is live: each snippet
// breaks one rule.
func TestDockerfileRulesCatchMistakes(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, dockerfile, rule string }{
		{"stage name casing", "FROM alpine:3 as Build\nRUN true\n", "FromAsCasing"},
		{"shell-form CMD", "FROM alpine:3\nCMD /app/bin/apigw\n", "JSONArgsRecommended"},
		{"undefined variable", "FROM alpine:3\nRUN echo $NOPE_UNDEFINED\nCOPY $NOPE_UNDEFINED /x\n", "UndefinedVar"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dt := []byte(tc.dockerfile)
			res := lintDockerfile(t, dt)
			var rules []string
			for _, w := range res.Warnings {
				rules = append(rules, w.RuleName)
			}
			require.Contains(t, rules, tc.rule)
		})
	}
}

// TestDockerfileShape checks the house rules: multi-stage, a static build of
// every app, distroless or scratch, non-root, no HEALTHCHECK, pinned bases.
func TestDockerfileShape(t *testing.T) {
	t.Parallel()
	ast, err := parser.Parse(strings.NewReader(string(readDockerfile(t))))
	require.NoError(t, err)
	require.Empty(t, ast.Warnings)
	stages, _, err := instructions.Parse(ast.AST, nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage")

	for _, s := range stages {
		require.NotContains(t, s.BaseName, ":latest", "pin base images")
		require.Contains(t, s.BaseName, ":", "pin base images: %s", s.BaseName)
		for _, c := range s.Commands {
			_, isHealthcheck := c.(*instructions.HealthCheckCommand)
			require.False(t, isHealthcheck, "no HEALTHCHECK: Kubernetes probes the apps")
		}
	}

	build := stages[0]
	var env []string
	var buildCmd string
	for _, c := range build.Commands {
		switch c := c.(type) {
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				env = append(env, kv.Key+"="+kv.Value)
			}
		case *instructions.RunCommand:
			if line := strings.Join(c.CmdLine, " "); strings.Contains(line, "go build") {
				buildCmd = line
			}
		}
	}
	require.Contains(t, env, "CGO_ENABLED=0", "static binaries")
	require.NotEmpty(t, buildCmd)
	for _, app := range apps {
		require.Contains(t, buildCmd, "./apps/"+app+" ", "the image holds %s", app)
		_, err := os.Stat(repo("apps", app, "main.go"))
		require.NoError(t, err, "apps/%s is a command", app)
	}
	require.Contains(t, buildCmd, "./deployments/docker/healthcheck")

	final := stages[len(stages)-1]
	require.True(t, strings.HasPrefix(final.BaseName, "gcr.io/distroless/static") || final.BaseName == "scratch",
		"final base %s is distroless static or scratch", final.BaseName)
	var user string
	var cmd []string
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.CmdCommand:
			cmd = c.CmdLine
			require.True(t, c.PrependShell == false, "exec-form CMD (no shell in the image)")
		case *instructions.CopyCommand:
			if c.From == "" {
				for _, src := range c.SourcePaths {
					_, err := os.Stat(repo(src))
					require.NoError(t, err, "COPY source %s exists", src)
				}
			}
		}
	}
	require.NotEmpty(t, user, "final stage sets USER")
	uid, _, _ := strings.Cut(user, ":")
	require.NotEqual(t, "0", uid)
	require.NotEqual(t, "root", uid)
	require.Equal(t, []string{"/app/bin/apigw"}, cmd)
}

// TestDockerignore: the build context keeps what the build needs and drops
// the rest. BuildKit reads Dockerfile.dockerignore beside the Dockerfile.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	f, err := os.Open(repo("deployments", "docker", "Dockerfile.dockerignore"))
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	patterns, err := ignorefile.ReadAll(f)
	require.NoError(t, err)
	pm, err := patternmatcher.New(patterns)
	require.NoError(t, err)
	tests := []struct {
		path    string
		ignored bool
	}{
		{"go.mod", false}, {"go.sum", false},
		{"apps/apigw/main.go", false}, {"adapters/kube/controller.go", false}, {"domain/partition.go", false},
		{"ports/queue.go", false}, {"migrations/0001_init.up.sql", false}, {"docs/docs.go", false},
		{"deployments/data/dcgm_metrics_20250718_134233.csv", false}, {"deployments/docker/healthcheck/main.go", false},
		{".git/HEAD", true}, {".local/pg/PG_VERSION", true}, {"bin/apigw", true},
		{"adapters/kube/controller_test.go", true}, {"tools/go.mod", true}, {"deployments/helm/mqreader/Chart.yaml", true},
	}
	for _, tc := range tests {
		ignored, err := pm.MatchesOrParentMatches(tc.path)
		require.NoError(t, err)
		require.Equal(t, tc.ignored, ignored, "%s ignored", tc.path)
	}
	// Everything the Dockerfile builds is in the context.
	for _, app := range slices.Concat(apps) {
		ignored, err := pm.MatchesOrParentMatches(fmt.Sprintf("apps/%s/main.go", app))
		require.NoError(t, err)
		require.False(t, ignored, app)
	}
}
