package archtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// uuidModule is the one third-party import domain and ports may use.
const uuidModule = "github.com/google/uuid"

// allowedAdapterImports lists reviewed exceptions to "adapters never import
// other adapters", as "adapters/x -> adapters/y". Keep it empty unless the
// design says otherwise.
var allowedAdapterImports = map[string]bool{}

// pkg is the part of `go list -json` output the rules read.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Deps         []string // every package it links, transitively (not its tests')
	Error        *struct{ Err string }
}

// module is the module under test: its path and its packages.
type module struct {
	path string
	pkgs []pkg
}

// rel returns the module-relative path of an import path ("" for the root)
// and whether it is in the module at all.
func (m module) rel(importPath string) (string, bool) {
	if importPath == m.path {
		return "", true
	}
	r, ok := strings.CutPrefix(importPath, m.path+"/")
	return r, ok
}

// under reports whether the module-relative path rel is dir or inside it.
func under(rel, dir string) bool { return rel == dir || strings.HasPrefix(rel, dir+"/") }

// isStd reports whether an import path is the standard library's: its first
// element has no dot (and it is not one of ours, which go.mod names with one).
func isStd(importPath string) bool {
	first, _, _ := strings.Cut(importPath, "/")
	return !strings.Contains(first, ".")
}

// topDir returns the first two elements of rel ("adapters/csv" for
// "adapters/csv/sub"), the unit adapters are independent at.
func topDir(rel string) string {
	parts := strings.SplitN(rel, "/", 3)
	if len(parts) < 2 {
		return rel
	}
	return parts[0] + "/" + parts[1]
}

// A rule returns one message per violation.
type rule struct {
	name  string
	check func(m module) []string
}

var rules = []rule{
	{"domain imports only the standard library and uuid", func(m module) []string {
		return innerLayer(m, "domain", nil)
	}},
	{"ports imports only the standard library, uuid and domain", func(m module) []string {
		return innerLayer(m, "ports", []string{"domain"})
	}},
	{"adapters do not import other adapters or apps", adapterImports},
	{"internal (libraries shared by adapters and apps) imports nothing of the module", func(m module) []string {
		return crossings(m, func(rel string) bool { return under(rel, "internal") }, pkg.nonTest,
			func(rel string) bool { return !under(rel, "internal") }, "")
	}},
	{"only apps import apps", func(m module) []string {
		return crossings(m, func(rel string) bool { return !under(rel, "apps") }, allImports,
			func(rel string) bool { return under(rel, "apps") }, "")
	}},
	{"only the apps that talk to Kubernetes link client-go", kubeLinks},
	{"only tests import test/...", func(m module) []string {
		// TestImports may use the helpers.
		return crossings(m, func(rel string) bool { return !under(rel, "test") }, pkg.nonTest,
			func(rel string) bool { return under(rel, "test") }, " (non-test code)")
	}},
}

// kubeApps are the apps that talk to the Kubernetes API: the controller,
// and the streamer (and the pipeline, which runs it) for dcgm-exporter
// discovery. client-go is 422 packages and half of a binary; an app that
// reaches it by accident (one shared wiring package did, for every app)
// carries 30 MB of code it never runs, and so does every test binary and
// race build of it.
var kubeApps = []string{"apps/partition-controller", "apps/pipeline", "apps/streamer"}

// kubeLinks reports every other app's main package that links client-go.
func kubeLinks(m module) []string {
	var out []string
	for _, p := range m.pkgs {
		rel, _ := m.rel(p.ImportPath)
		if !under(rel, "apps") || under(rel, "apps/internal") || slices.Contains(kubeApps, rel) {
			continue
		}
		for _, d := range p.Deps {
			if under(d, "k8s.io/client-go") {
				out = append(out, fmt.Sprintf("%s links %s (through a shared package: go list -deps %s)", p.ImportPath, d, p.ImportPath))
				break
			}
		}
	}
	return out
}

// crossings reports, for every package whose module-relative path is in
// from, each of imports(p) that is in the module and in to, as
// "p<note> imports imp".
func crossings(m module, from func(rel string) bool, imports func(pkg) []string, to func(rel string) bool, note string) []string {
	var out []string
	for _, p := range m.pkgs {
		if rel, _ := m.rel(p.ImportPath); !from(rel) {
			continue
		}
		for _, imp := range imports(p) {
			if r, ok := m.rel(imp); ok && to(r) {
				out = append(out, fmt.Sprintf("%s%s imports %s", p.ImportPath, note, imp))
			}
		}
	}
	return out
}

func (p pkg) nonTest() []string { return p.Imports }

// innerLayer checks the non-test imports of the packages under dir: the
// standard library, uuid, dir's own subtree and the allowed module dirs.
func innerLayer(m module, dir string, allowed []string) []string {
	var out []string
	for _, p := range m.pkgs {
		if rel, _ := m.rel(p.ImportPath); !under(rel, dir) {
			continue
		}
		for _, imp := range p.Imports {
			if isStd(imp) || imp == uuidModule || strings.HasPrefix(imp, uuidModule+"/") {
				continue
			}
			if r, ok := m.rel(imp); ok && slices.ContainsFunc(append([]string{dir}, allowed...), func(d string) bool { return under(r, d) }) {
				continue
			}
			out = append(out, fmt.Sprintf("%s imports %s", p.ImportPath, imp))
		}
	}
	return out
}

// adapterImports checks that the non-test code under adapters/x imports
// neither another adapter nor apps; adapters/internal holds helpers (not
// backends) that every adapter may use. Tests are not held to it: an adapter's
// tests may need another adapter as the real other side of a port (the
// memory queue, or the postgres store, since the database is never mocked).
func adapterImports(m module) []string {
	var out []string
	for _, p := range m.pkgs {
		rel, _ := m.rel(p.ImportPath)
		if !under(rel, "adapters") || rel == "adapters" {
			continue
		}
		own := topDir(rel)
		for _, imp := range p.Imports {
			r, ok := m.rel(imp)
			switch {
			case !ok:
			case under(r, "apps"):
				out = append(out, fmt.Sprintf("%s imports %s", p.ImportPath, imp))
			case under(r, "adapters/internal"):
				// Helpers shared by adapters (not an adapter): allowed,
				// and they may import no adapter themselves.
				if own == "adapters/internal" {
					continue
				}
			case under(r, "adapters") && r != "adapters":
				if other := topDir(r); other != own && !allowedAdapterImports[own+" -> "+other] {
					out = append(out, fmt.Sprintf("%s imports %s", p.ImportPath, imp))
				}
			}
		}
	}
	return out
}

func allImports(p pkg) []string {
	return slices.Concat(p.Imports, p.TestImports, p.XTestImports)
}

// forbidden are the types CI rejects, built up so this file does not match.
var forbidden = []string{"sync." + "Mutex", "sync." + "RWMutex"}

// skipDirs are not the module's code: the local PostgreSQL and vendored code.
var skipDirs = map[string]bool{".local": true, "vendor": true, ".git": true}

// scanMutexes reports every line of a .go file under root that names a
// forbidden type, as "path:line: text".
func scanMutexes(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, len(data)+1)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if slices.ContainsFunc(forbidden, func(f string) bool { return strings.Contains(line, f) }) {
				out = append(out, fmt.Sprintf("%s:%d: %s", rel, n, strings.TrimSpace(line)))
			}
		}
		return sc.Err()
	})
	return out, err
}

// moduleRoot walks up from the working directory to the go.mod and returns
// its directory and module path.
func moduleRoot(t *testing.T) (dir, path string) {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if p, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
					return dir, strings.Trim(strings.TrimSpace(p), `"`)
				}
			}
			t.Fatalf("%s/go.mod has no module line", dir)
		}
		require.ErrorIs(t, err, fs.ErrNotExist)
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above the working directory")
		dir = parent
	}
}

// listPackages runs `go list -e -json ./...` in root. -e keeps packages that
// do not build (another change in progress) in the list: their imports are
// still known, and building is not this test's business.
func listPackages(t *testing.T, root string) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		if p.Error != nil {
			t.Logf("%s does not load (%s); checking the imports it has", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	require.NotEmpty(t, pkgs)
	return pkgs
}

// TestArchitecture checks the real module.
func TestArchitecture(t *testing.T) {
	t.Parallel()
	root, path := moduleRoot(t)
	m := module{path: path, pkgs: listPackages(t, root)}
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			v := r.check(m)
			require.Empty(t, v, "%d violation(s):\n%s", len(v), strings.Join(v, "\n"))
		})
	}
	t.Run("no mutexes", func(t *testing.T) {
		t.Parallel()
		v, err := scanMutexes(root)
		require.NoError(t, err)
		require.Empty(t, v, "%d use(s) of %s; use an owner goroutine (docs/architecture.md, Concurrency):\n%s",
			len(v), strings.Join(forbidden, "/"), strings.Join(v, "\n"))
	})
}
