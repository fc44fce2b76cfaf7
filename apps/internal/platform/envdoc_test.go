package platform_test

import (
	"bufio"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/test/stack"
)

// envReaders are the platform.Env methods whose first argument names a
// variable.
var envReaders = []string{"String", "Int", "Millis", "Seconds", "Duration", "Bool", "List", "OneOf", "Require"}

// envName is what a variable name looks like; it keeps slog.String("key", …)
// and other methods of the same names out.
var envName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// readVariables parses the non-test Go files of the default build under
// dirs and returns every variable read through platform.Env or
// os.Getenv/LookupEnv, with where it is read. A name that is not a string
// literal is reported in dynamic: the test cannot see it, so it fails.
func readVariables(t *testing.T, root string, dirs ...string) (vars map[string][]string, dynamic []string) {
	t.Helper()
	vars = map[string][]string{}
	fset := token.NewFileSet()
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			// Build tags: the faults build's failpoints are not configuration.
			if ok, err := build.Default.MatchFile(filepath.Dir(path), filepath.Base(path)); err != nil || !ok {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				x, _ := sel.X.(*ast.Ident)
				osCall := x != nil && x.Name == "os" && (sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv")
				if !osCall && !slices.Contains(envReaders, sel.Sel.Name) {
					return true
				}
				at, _ := filepath.Rel(root, fset.Position(call.Pos()).String())
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					// The apps name their *platform.Env "env"; other
					// receivers of a String or Int method are not env reads.
					if osCall || (x != nil && x.Name == "env") {
						dynamic = append(dynamic, at)
					}
					return true
				}
				name, err := strconv.Unquote(lit.Value)
				if err == nil && envName.MatchString(name) {
					vars[name] = append(vars[name], at)
				}
				return true
			})
			return nil
		})
		require.NoError(t, err)
	}
	return vars, dynamic
}

// documentedLine is a variable of .env.example: "NAME=…", or commented out
// ("# NAME=…", "# NAME   # why") when it has no useful default.
var documentedLine = regexp.MustCompile(`^#?\s*([A-Z][A-Z0-9_]*)(=|\s|$)`)

func documentedVariables(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := documentedLine.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			out[m[1]] = true
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// TestEnvExampleMatchesTheCode keeps .env.example equal to the variables the
// apps read: every one read is documented, every one documented is read.
func TestEnvExampleMatchesTheCode(t *testing.T) {
	t.Parallel()
	root, err := stack.Root()
	require.NoError(t, err)
	read, dynamic := readVariables(t, root, "apps", "adapters")
	require.Empty(t, dynamic, "a variable named by a computed string: the documentation cannot be checked")
	require.Contains(t, read, "DATABASE_URL", "the scan finds the env readers")
	documented := documentedVariables(t, filepath.Join(root, ".env.example"))

	var problems []string
	for name, at := range read {
		if !documented[name] {
			problems = append(problems, name+" is read ("+strings.Join(at, ", ")+") but not in .env.example")
		}
	}
	for name := range documented {
		if _, ok := read[name]; !ok {
			problems = append(problems, name+" is in .env.example but no app reads it")
		}
	}
	slices.Sort(problems)
	require.Empty(t, problems)
}
