// Package stack builds the apps and runs them as real processes on loopback,
// for `make run` and the end-to-end, fault and benchmark suites. A Stack owns
// the processes it starts and stops each by its own PID.
package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gpufleet/telemetry/test/freeport"
)

// Build compiles the named apps (directories under apps/) into binDir.
func Build(ctx context.Context, root, binDir string, apps ...string) error {
	return BuildFlags(ctx, root, binDir, nil, apps...)
}

// BuildTags is Build with build tags, e.g. "faults" for the binaries of the
// fault-injection suite, which compiles in its test-only failpoints.
func BuildTags(ctx context.Context, root, binDir string, tags []string, apps ...string) error {
	var flags []string
	if len(tags) > 0 {
		flags = []string{"-tags", strings.Join(tags, ",")}
	}
	return BuildFlags(ctx, root, binDir, flags, apps...)
}

// BuildFlags is Build with extra `go build` flags: RaceFlags for the
// end-to-end and fault suites, whose logs RaceReports then checks.
//
// Each app is linked by `go run -exec cp`, which copies the executable to
// binDir instead of running it. The go command keeps the executables that
// go run links in its build cache (go build -o keeps none), so an app whose
// code and flags did not change is copied, not linked again. The
// end-to-end, monitoring and benchmark tests link 16 apps in every `make
// test`: about 40 CPU seconds of a warm run (issue 12), and the fault and
// UI suites link them again. The executables are stripped (go run links
// with -s -w): panics and race reports still name functions and lines, as
// those come from the runtime's own tables.
func BuildFlags(ctx context.Context, root, binDir string, flags []string, apps ...string) error {
	pkgs := make([]string, len(apps))
	for i, a := range apps {
		pkgs[i] = "./apps/" + a
	}
	// Compile every package first, in one go command: a go run per app on
	// a cold cache would compile the packages the apps share once each.
	if err := goCmd(ctx, root, append(append([]string{"list", "-export", "-f", "{{.ImportPath}}"}, flags...), pkgs...)...); err != nil {
		return fmt.Errorf("compile %s: %w", strings.Join(apps, " "), err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.NumCPU())
	for i, a := range apps {
		g.Go(func() error {
			args := append(append([]string{"run"}, flags...), "-exec", "cp", pkgs[i], filepath.Join(binDir, a))
			if err := goCmd(gctx, root, args...); err != nil {
				return fmt.Errorf("build %s: %w", a, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// goCmd runs the go command in dir; its error carries the command's output.
func goCmd(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// BuildTimeout bounds one build of the apps. It is as long as `make test`'s
// -timeout, not as long as a warm build (seconds): a fresh clone on a cold
// build cache took over five minutes on two cores to build four apps while
// the other test packages compiled.
const BuildTimeout = 20 * time.Minute

// RaceFlags builds with the race detector. A race-built app that hits a
// race prints a report to its log (and exits 66 at the end), so the suites
// check the logs with RaceReports rather than exit codes, which a killed or
// stopped process does not reliably give.
var RaceFlags = []string{"-race"}

// raceHeader starts every report of the race detector.
const raceHeader = "WARNING: DATA RACE"

// RaceReports returns, for each log (*.log) in logDir holding a report of
// the race detector, its name and the first report.
func RaceReports(logDir string) ([]string, error) {
	logs, err := filepath.Glob(filepath.Join(logDir, "*.log"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		text := string(b)
		i := strings.Index(text, raceHeader)
		if i < 0 {
			continue
		}
		report := text[i:]
		if end := strings.Index(report, "\n==================\n"); end >= 0 {
			report = report[:end]
		}
		out = append(out, fmt.Sprintf("%s: %d race reports; the first:\n%s", filepath.Base(path), strings.Count(text, raceHeader), report))
	}
	return out, nil
}

// Root returns the module root above the working directory.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// StartReady starts binary on a free address and waits until path answers
// 200. The address's port is free only when it is picked: a parallel test's
// service can take it before the app binds, so a start that fails with
// "address already in use" is retried on a new address, up to three times.
func StartReady(ctx context.Context, binary, name, logDir string, env map[string]string, path string) (*Proc, error) {
	var err error
	for range 3 {
		var addr string
		if addr, err = freeport.Addr(); err != nil {
			return nil, err
		}
		var p *Proc
		if p, err = Start(binary, name, addr, logDir, env); err != nil {
			return nil, err
		}
		if err = p.WaitReady(ctx, path); err == nil {
			return p, nil
		}
		_ = p.Stop(10 * time.Second)
		if !strings.Contains(err.Error(), "address already in use") {
			return nil, err
		}
	}
	return nil, err
}

// The queue tokens every process Start runs is given unless its env names
// its own (TokenEnv): the suites run with authentication on, as production
// does. `make run` generates fresh ones instead.
const (
	PublishToken = "stack-publish-token-0123456789abcdef"
	ConsumeToken = "stack-consume-token-0123456789abcdef"
)

// TokenEnv is the environment that gives every app the queue credentials:
// the token lists mqwriter, mqreader and the pipeline accept (each also
// knows the other scope's, so a wrong-scope token is a 403, not a 401), the
// tokens the streamer and collector send, and, for QUEUE_BACKEND=nats, the
// same two secrets as the passwords of natsd's publisher and consumer users.
func TokenEnv(publish, consume string) map[string]string {
	return map[string]string{
		"MQ_PUBLISH_TOKENS": publish, "MQ_CONSUME_TOKENS": consume,
		"MQ_PUBLISH_TOKEN": publish, "MQ_CONSUME_TOKEN": consume,
		"NATS_PUBLISHER_PASSWORD": publish, "NATS_CONSUMER_PASSWORD": consume,
	}
}

// withDefaultTokens is env with TokenEnv(PublishToken, ConsumeToken) under
// it: a variable env sets, or whose _FILE variant it sets, is env's.
func withDefaultTokens(env map[string]string) map[string]string {
	out := make(map[string]string, len(env)+6)
	for k, v := range TokenEnv(PublishToken, ConsumeToken) {
		_, set := env[k]
		_, file := env[k+"_FILE"]
		if !set && !file {
			out[k] = v
		}
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// Proc is one running app.
type Proc struct {
	Name string
	Addr string // HTTP_ADDR
	Log  string // path of its combined output
	cmd  *exec.Cmd
	done chan struct{} // closed when the process exited
	err  error         // exit status, valid after done
}

// Start runs binary with env (plus the current environment and the stack's
// default queue tokens, see TokenEnv) and HTTP_ADDR = addr, logging to
// logDir/name.log.
func Start(binary, name, addr, logDir string, env map[string]string) (*Proc, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary)
	cmd.Env = os.Environ()
	for k, v := range withDefaultTokens(env) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "HTTP_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, so a Ctrl-C aimed at the supervisor is not also
	// delivered straight to the children: the supervisor stops them in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Addr: addr, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// URL is the app's base URL.
func (p *Proc) URL() string { return "http://" + p.Addr }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit status (nil for a clean exit); valid once Done
// is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout, then kills.
func (p *Proc) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s; killed", p.Name, timeout)
	}
}

// WaitReady polls /readyz (or /healthz with health=true) until 200.
func (p *Proc) WaitReady(ctx context.Context, path string) error {
	client := &http.Client{Timeout: time.Second}
	var last string
	for {
		resp, err := client.Get(p.URL() + path)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before ready (%v); log %s:\n%s", p.Name, p.err, p.Log, tail(p.Log))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s%s: %s; log %s:\n%s", p.Name, p.URL(), path, last, p.Log, tail(p.Log))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// RunWithBinaries is the body of a suite's TestMain: it builds apps (with
// the extra `go build` flags) into a temporary directory, points *binDir at
// it, runs the tests and removes the directory. It returns the exit code.
// The build is bounded by BuildTimeout: go test's -timeout starts only with
// m.Run, and on a cold build cache the first build of a suite compiles every
// dependency while the other packages compile theirs.
func RunWithBinaries(m *testing.M, binDir *string, flags []string, apps ...string) int {
	root, err := Root()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "stack-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	if err := BuildFlags(ctx, root, dir, flags, apps...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*binDir = dir
	return m.Run()
}
