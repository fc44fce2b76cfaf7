// Package pglocal runs a throwaway PostgreSQL cluster in a project folder for
// tests and `make run` when DATABASE_URL is unset. It finds initdb and pg_ctl
// on PATH or under /usr/lib/postgresql/*/bin, creates the cluster once, starts
// it on a free loopback port, and reuses it while it runs. PostgreSQL refuses
// to run as root, so under root the server runs as the "postgres" user (or
// "nobody"). Starting is serialised with a file lock, so concurrent test
// processes share one server.
package pglocal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpufleet/telemetry/test/freeport"
	"github.com/gpufleet/telemetry/test/pgadmin"
)

// Cluster is a running local server.
type Cluster struct {
	Dir  string
	Port int
}

// URL is the connection string of database db on the cluster (superuser
// "postgres", trust authentication on 127.0.0.1 only).
func (c Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// settings are appended to postgresql.conf at creation. Only loopback TCP,
// no Unix socket (its directory would need to be writable by the server user),
// and enough connections for parallel test packages.
const settings = `
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 400
shared_buffers = 256MB
log_min_messages = warning
`

// Start makes sure a cluster runs in dir (created if absent) and returns it.
func Start(ctx context.Context, dir string) (Cluster, error) {
	return StartOnPort(ctx, dir, 0)
}

// StartOnPort is Start with the port to listen on when the cluster has to be
// started; 0 picks a free one. A test that stops its cluster (StopImmediate)
// restarts it on the same port, so running services find it again.
func StartOnPort(ctx context.Context, dir string, port int) (Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Cluster{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Cluster{}, fmt.Errorf("create %s: %w", dir, err)
	}
	unlock, err := lock(filepath.Join(dir, "lock"))
	if err != nil {
		return Cluster{}, err
	}
	defer unlock()

	bin, cred, err := server()
	if err != nil {
		return Cluster{}, err
	}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := initCluster(ctx, bin, cred, dir, data); err != nil {
			return Cluster{}, err
		}
	}
	if port, ok := running(data); ok {
		c := Cluster{Dir: dir, Port: port}
		if err := waitReady(ctx, c); err == nil {
			return c, nil
		}
	}
	if port == 0 {
		if port, err = freeport.Port(); err != nil { // below the ephemeral range: free again for a restart on it
			return Cluster{}, err
		}
	}
	logFile := filepath.Join(dir, "postgres.log")
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_ctl"), "-D", data, "-l", logFile, "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d", port), "start")
	if err := runAs(cmd, cred); err != nil {
		return Cluster{}, fmt.Errorf("pg_ctl start (log: %s): %w", logFile, err)
	}
	c := Cluster{Dir: dir, Port: port}
	return c, waitReady(ctx, c)
}

// Stop stops the cluster in dir if it runs (fast shutdown).
func Stop(ctx context.Context, dir string) error {
	return stop(ctx, dir, "fast")
}

// StopImmediate stops the cluster in dir if it runs, as a crash would:
// pg_ctl stop -m immediate ends every server process at once, without a
// checkpoint, and the next start runs crash recovery.
func StopImmediate(ctx context.Context, dir string) error {
	return stop(ctx, dir, "immediate")
}

func stop(ctx context.Context, dir, mode string) error {
	data := filepath.Join(dir, "data")
	if _, ok := running(data); !ok {
		return nil
	}
	return pgCtl(ctx, "stop -m "+mode, "-D", data, "-m", mode, "-w", "stop")
}

// server returns the directory of the server binaries (findBin) and the
// credential to run them with (serverUser).
func server() (string, *syscall.Credential, error) {
	bin, err := findBin()
	if err != nil {
		return "", nil, err
	}
	cred, err := serverUser()
	if err != nil {
		return "", nil, err
	}
	return bin, cred, nil
}

// pgCtl runs pg_ctl with args as the server user; what names the action
// in the error.
func pgCtl(ctx context.Context, what string, args ...string) error {
	bin, cred, err := server()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_ctl"), args...)
	if err := runAs(cmd, cred); err != nil {
		return fmt.Errorf("pg_ctl %s: %w", what, err)
	}
	return nil
}

// Running reports the port of the cluster in dir, if one runs.
func Running(dir string) (Cluster, bool) {
	port, ok := running(filepath.Join(dir, "data"))
	return Cluster{Dir: dir, Port: port}, ok
}

func initCluster(ctx context.Context, bin string, cred *syscall.Credential, dir, data string) error {
	_ = os.RemoveAll(data) // a half-made cluster from an interrupted initdb
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", data, err)
	}
	if err := chown(dir, cred); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions")
	if err := runAs(cmd, cred); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("configure cluster: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(settings); err != nil {
		return fmt.Errorf("configure cluster: %w", err)
	}
	return nil
}

// running reads postmaster.pid: line 1 is the pid, line 4 the port.
func running(data string) (int, bool) {
	f, err := os.Open(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() && len(lines) < 4 {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	if len(lines) < 4 {
		return 0, false
	}
	pid, err1 := strconv.Atoi(lines[0])
	port, err2 := strconv.Atoi(lines[3])
	if err1 != nil || err2 != nil || syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	return port, true
}

func waitReady(ctx context.Context, c Cluster) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("local postgres on port %d not ready: %w", c.Port, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// findBin returns the directory holding initdb and pg_ctl: PATH first, then
// the newest /usr/lib/postgresql/<version>/bin (Debian's layout).
func findBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin: install the postgresql package (apt-get install postgresql) or set DATABASE_URL")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// serverUser returns the credential to run the server with: nil when not
// root, else the "postgres" user, or "nobody" when that does not exist.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and neither a postgres nor a nobody user exists to run PostgreSQL as")
}

func chown(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}

func runAs(cmd *exec.Cmd, cred *syscall.Credential) error {
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Env = append(os.Environ(), "HOME=/tmp")
	}
	// Run the command from a directory the server user can read.
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// EnsureDatabase creates database name unless it exists.
func (c Cluster) EnsureDatabase(ctx context.Context, name string) error {
	return pgadmin.EnsureDatabase(ctx, c.URL("postgres"), name)
}
