package pglocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pair is a primary and a streaming standby on this machine, for failover
// tests: Primary in <dir>/primary, Standby (pg_basebackup -R, application
// name StandbyName) in <dir>/standby.
type Pair struct {
	Primary, Standby Cluster
	Sync             bool // synchronous_standby_names names the standby
}

// StandbyName is the standby's application_name (in primary_conninfo).
const StandbyName = "s1"

// replication is appended to the primary's postgresql.conf; %s is its
// synchronous_standby_names.
const replication = `
wal_level = replica
max_wal_senders = 5
synchronous_commit = on
synchronous_standby_names = '%s'
`

// StartPair builds and starts a primary and a standby under dir. With sync
// the primary waits for the standby's flush on every commit
// (synchronous_standby_names = 'FIRST 1 (s1)'); without, it replicates
// asynchronously. The standby's own synchronous_standby_names is empty, so
// once promoted it commits alone instead of waiting forever (pg_basebackup
// copies the primary's configuration).
func StartPair(ctx context.Context, dir string, sync bool) (Pair, error) {
	bin, cred, err := server()
	if err != nil {
		return Pair{}, err
	}
	pdir, sdir := filepath.Join(dir, "primary"), filepath.Join(dir, "standby")
	for _, d := range []string{pdir, sdir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return Pair{}, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := initCluster(ctx, bin, cred, pdir, filepath.Join(pdir, "data")); err != nil {
		return Pair{}, err
	}
	names := ""
	if sync {
		names = "FIRST 1 (" + StandbyName + ")"
	}
	if err := appendConf(filepath.Join(pdir, "data"), fmt.Sprintf(replication, names)); err != nil {
		return Pair{}, err
	}
	primary, err := Start(ctx, pdir)
	if err != nil {
		return Pair{}, fmt.Errorf("start primary: %w", err)
	}
	if err := chown(sdir, cred); err != nil {
		return Pair{}, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port),
		"-U", "postgres", "-D", filepath.Join(sdir, "data"), "-R", "-X", "stream", "-c", "fast", "-d", "application_name="+StandbyName)
	if err := runAs(cmd, cred); err != nil {
		return Pair{}, fmt.Errorf("pg_basebackup: %w", err)
	}
	if err := appendConf(filepath.Join(sdir, "data"), "\nsynchronous_standby_names = ''\n"); err != nil {
		return Pair{}, err
	}
	standby, err := Start(ctx, sdir)
	if err != nil {
		return Pair{}, fmt.Errorf("start standby: %w", err)
	}
	p := Pair{Primary: primary, Standby: standby, Sync: sync}
	return p, p.WaitStreaming(ctx)
}

func appendConf(data, text string) error {
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("configure %s: %w", data, err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		return fmt.Errorf("configure %s: %w", data, err)
	}
	return nil
}

// WaitStreaming waits until the primary reports the standby streaming in
// the pair's mode (sync_state 'sync' or 'async'): for a moment after it
// connects a synchronous standby still shows 'async'.
func (p Pair) WaitStreaming(ctx context.Context) error {
	want := "async"
	if p.Sync {
		want = "sync"
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		state, err := func() (string, error) {
			conn, err := pgx.Connect(ctx, p.Primary.URL("postgres"))
			if err != nil {
				return "", err
			}
			defer conn.Close(context.Background())
			var s string
			err = conn.QueryRow(ctx, `SELECT sync_state FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'`,
				StandbyName).Scan(&s)
			return s, err
		}()
		if err == nil && state == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("standby not streaming (%s) within 30s: state %q, last error %v", want, state, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL is a multi-host connection string to database db that follows the
// primary: pgx tries both servers and keeps the one that accepts writes.
func (p Pair) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write",
		p.Primary.Port, p.Standby.Port, db)
}

// Promote turns the standby in dir into a primary (pg_ctl promote -w).
func Promote(ctx context.Context, dir string) error {
	return pgCtl(ctx, "promote", "-D", filepath.Join(dir, "data"), "-w", "promote")
}

// Stop stops both servers (fast), ignoring one that is not running.
func (p Pair) Stop(ctx context.Context) error {
	return errors.Join(Stop(ctx, p.Standby.Dir), Stop(ctx, p.Primary.Dir))
}
