// Command migrate applies or reverts the database schema (DATABASE_URL).
//
//	migrate up          apply every pending migration
//	migrate down [N]    revert the newest N migrations (default 1; 0 = all)
//	migrate status      list migrations and whether each is applied
//	migrate exec FILE…  run each SQL file in one transaction under the same
//	                    lock (the Helm chart's grants for the apps' roles)
//
// It takes a PostgreSQL advisory lock, so several starters (a Helm hook Job
// and apps with MIGRATE_ON_START) never apply a migration twice.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gpufleet/telemetry/internal/retry"
	"github.com/gpufleet/telemetry/migrations"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: migrate up | down [N] | status | exec FILE...")
	}
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		return fmt.Errorf("DATABASE_URL is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	conn, err := connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	switch args[0] {
	case "up":
		applied, err := migrations.Up(ctx, conn)
		fmt.Printf("applied %d migration(s) %v\n", len(applied), applied)
		return err
	case "down":
		steps := 1
		if len(args) > 1 {
			if steps, err = strconv.Atoi(args[1]); err != nil || steps < 0 {
				return fmt.Errorf("down %q: want a number of steps (0 = all)", args[1])
			}
		}
		reverted, err := migrations.Down(ctx, conn, steps)
		fmt.Printf("reverted %d migration(s) %v\n", len(reverted), reverted)
		return err
	case "status":
		return status(ctx, conn)
	case "exec":
		if len(args) < 2 {
			return fmt.Errorf("exec: name at least one SQL file")
		}
		for _, name := range args[1:] {
			script, err := os.ReadFile(name)
			if err != nil {
				return fmt.Errorf("exec: %w", err)
			}
			if err := migrations.Exec(ctx, conn, string(script)); err != nil {
				return fmt.Errorf("exec %s: %w", name, err)
			}
			fmt.Printf("executed %s\n", name)
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q (want up, down, status or exec)", args[0])
	}
}

// connect retries until ctx ends (the module's backoff from 0.5 s up to
// 5 s): in Kubernetes the database may come up after the migration Job
// starts.
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	p := retry.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second, Notify: func(err error, wait time.Duration) {
		fmt.Fprintf(os.Stderr, "database not reachable yet, trying again in %s: %v\n", wait.Round(time.Millisecond), err)
	}}
	conn, err := retry.Do(ctx, p, func() (*pgx.Conn, error) { return pgx.Connect(ctx, dsn) })
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

func status(ctx context.Context, conn *pgx.Conn) error {
	all, err := migrations.All()
	if err != nil {
		return err
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err == nil {
		vs, _ := pgx.CollectRows(rows, pgx.RowTo[int])
		for _, v := range vs {
			applied[v] = true
		}
	}
	for _, m := range all {
		state := "pending"
		if applied[m.Version] {
			state = "applied"
		}
		fmt.Printf("%04d_%s\t%s\n", m.Version, m.Name, state)
	}
	return nil
}
