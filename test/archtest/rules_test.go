package archtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRulesCatchViolations runs the rules over made-up modules, so the
// architecture test is known to fail when it should.
func TestRulesCatchViolations(t *testing.T) {
	t.Parallel()
	const mod = "example.com/m"
	tests := []struct {
		name string
		pkg  pkg
		want []string // substrings, one per expected violation; none for a clean package
	}{
		{name: "domain on stdlib and uuid", pkg: pkg{ImportPath: mod + "/domain",
			Imports: []string{"fmt", "hash/fnv", "github.com/google/uuid"}}},
		{name: "domain subpackage on domain", pkg: pkg{ImportPath: mod + "/domain/sub", Imports: []string{mod + "/domain"}}},
		{name: "domain on pgx", pkg: pkg{ImportPath: mod + "/domain", Imports: []string{"github.com/jackc/pgx/v5"}},
			want: []string{"domain imports github.com/jackc/pgx/v5"}},
		{name: "domain on ports", pkg: pkg{ImportPath: mod + "/domain", Imports: []string{mod + "/ports"}},
			want: []string{"domain imports example.com/m/ports"}},
		{name: "ports on domain", pkg: pkg{ImportPath: mod + "/ports", Imports: []string{"context", mod + "/domain", "github.com/google/uuid"}}},
		{name: "ports on an adapter and fx", pkg: pkg{ImportPath: mod + "/ports", Imports: []string{mod + "/adapters/postgres", "go.uber.org/fx"}},
			want: []string{"ports imports example.com/m/adapters/postgres", "ports imports go.uber.org/fx"}},
		{name: "adapter on its own subpackage, ports, domain", pkg: pkg{ImportPath: mod + "/adapters/postgres",
			Imports: []string{mod + "/adapters/postgres/internal/sqlc", mod + "/ports", mod + "/domain"}}},
		{name: "adapter subpackage on its parent", pkg: pkg{ImportPath: mod + "/adapters/postgres/sub", Imports: []string{mod + "/adapters/postgres"}}},
		{name: "adapter on another adapter", pkg: pkg{ImportPath: mod + "/adapters/pgqueue", Imports: []string{mod + "/adapters/postgres"}},
			want: []string{"adapters/pgqueue imports example.com/m/adapters/postgres"}},
		{name: "adapter on memory in code", pkg: pkg{ImportPath: mod + "/adapters/nats", Imports: []string{mod + "/adapters/memory"}},
			want: []string{"adapters/nats imports example.com/m/adapters/memory"}},
		{name: "adapter prefix is not a subpackage", pkg: pkg{ImportPath: mod + "/adapters/post", Imports: []string{mod + "/adapters/postgres"}},
			want: []string{"adapters/post imports"}},
		{name: "adapter tests on memory and test helpers", pkg: pkg{ImportPath: mod + "/adapters/postgres",
			TestImports: []string{mod + "/adapters/memory", mod + "/test/pgtest"}, XTestImports: []string{mod + "/adapters/postgres"}}},
		{name: "adapter tests on another adapter", pkg: pkg{ImportPath: mod + "/adapters/httpapi", XTestImports: []string{mod + "/adapters/postgres"}}},
		{name: "adapter tests on apps", pkg: pkg{ImportPath: mod + "/adapters/mqhttp", XTestImports: []string{mod + "/apps/mqwriter"}},
			want: []string{"adapters/mqhttp imports example.com/m/apps/mqwriter"}},
		{name: "adapter on apps", pkg: pkg{ImportPath: mod + "/adapters/mqhttp", Imports: []string{mod + "/apps/internal/platform"}},
			want: []string{"adapters/mqhttp imports example.com/m/apps/internal/platform", "adapters/mqhttp imports example.com/m/apps/internal/platform"}},
		{name: "apps on apps", pkg: pkg{ImportPath: mod + "/apps/streamer", Imports: []string{mod + "/apps/internal/platform", mod + "/adapters/csv"}}},
		{name: "test helper on apps", pkg: pkg{ImportPath: mod + "/test/e2e", TestImports: []string{mod + "/apps/streamer"}},
			want: []string{"test/e2e imports example.com/m/apps/streamer"}},
		{name: "migrations on test helper", pkg: pkg{ImportPath: mod + "/migrations", Imports: []string{mod + "/test/pgtest"}},
			want: []string{"migrations (non-test code) imports example.com/m/test/pgtest"}},
		{name: "tests on test helper", pkg: pkg{ImportPath: mod + "/migrations", TestImports: []string{mod + "/test/pgtest"}}},
		{name: "test helpers on each other", pkg: pkg{ImportPath: mod + "/test/contract/queuetest", Imports: []string{mod + "/test/pgtest"}}},
		{name: "adapter and app on the shared internal library", pkg: pkg{ImportPath: mod + "/adapters/mqhttp", Imports: []string{mod + "/internal/retry"}}},
		{name: "shared internal library on a third-party module and its own tree", pkg: pkg{ImportPath: mod + "/internal/retry",
			Imports: []string{"github.com/cenkalti/backoff/v5", mod + "/internal/other"}}},
		{name: "shared internal library on ports", pkg: pkg{ImportPath: mod + "/internal/retry", Imports: []string{mod + "/ports"}},
			want: []string{"internal/retry imports example.com/m/ports"}},
		{name: "controller links client-go", pkg: pkg{ImportPath: mod + "/apps/partition-controller", Deps: []string{"k8s.io/client-go/kubernetes"}}},
		{name: "a shared app package links client-go", pkg: pkg{ImportPath: mod + "/apps/internal/source", Deps: []string{"k8s.io/client-go/kubernetes"}}},
		{name: "writer links client-go", pkg: pkg{ImportPath: mod + "/apps/mqwriter", Deps: []string{"k8s.io/apimachinery/pkg/labels", "k8s.io/client-go/rest"}},
			want: []string{"apps/mqwriter links k8s.io/client-go/rest"}},
		{name: "other modules are not ours", pkg: pkg{ImportPath: mod + "/adapters/csv", Imports: []string{"example.com/mother/adapters/x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := module{path: mod, pkgs: []pkg{tt.pkg}}
			var got []string
			for _, r := range rules {
				got = append(got, r.check(m)...)
			}
			require.Len(t, got, len(tt.want), "violations: %q", got)
			for _, w := range tt.want {
				require.True(t, containsSubstring(got, w), "want a violation mentioning %q in %q", w, got)
			}
		})
	}
}

func containsSubstring(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestScanMutexes(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(rel, text string) {
		path := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	}
	lock := "sync." + "Mutex"
	rwlock := "sync." + "RWMutex"
	write("a/a.go", "package a\n\nimport \"sync\"\n\ntype T struct {\n\tmu "+lock+"\n}\n")
	write("b/b_test.go", "package b\n\nvar _ "+rwlock+"\n")
	write("c/c.go", "package c\n\nvar wg sync.WaitGroup // and a sync.Once\n")
	write(".local/pg/x.go", "package x\n\nvar _ "+lock+"\n")
	write("vendor/v/v.go", "package v\n\nvar _ "+lock+"\n")
	write("notes.md", lock+"\n")

	got, err := scanMutexes(root)
	require.NoError(t, err)
	require.Equal(t, []string{
		filepath.Join("a", "a.go") + ":6: mu " + lock,
		filepath.Join("b", "b_test.go") + ":3: var _ " + rwlock,
	}, got)
}
