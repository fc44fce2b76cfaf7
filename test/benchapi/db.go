package main

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/gpufleet/telemetry/migrations"
	"github.com/gpufleet/telemetry/test/pgadmin"
	"github.com/gpufleet/telemetry/test/pglocal"
	"github.com/gpufleet/telemetry/test/pgtest"
)

// server is where the benchmark database lives.
type server struct {
	admin   string // connection string of a maintenance database
	dataDir string // the local cluster's folder, for the disk check; "" for DATABASE_URL
}

// openServer picks DATABASE_URL (a server the role may create databases
// on, as for the tests) or starts the project's local cluster.
func openServer(ctx context.Context) (server, error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return server{admin: u}, nil
	}
	dir, err := pgtest.LocalDir()
	if err != nil {
		return server{}, fmt.Errorf("local cluster: %w", err)
	}
	c, err := pglocal.Start(ctx, dir)
	if err != nil {
		return server{}, fmt.Errorf("start local postgres: %w", err)
	}
	return server{admin: c.URL("postgres"), dataDir: dir}, nil
}

// ensureDatabase creates database name unless it exists, applies the
// migrations, and returns its connection string.
func (s server) ensureDatabase(ctx context.Context, name string) (string, error) {
	admin, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", pgadmin.Redact(s.admin), err)
	}
	defer admin.Close(ctx)
	var exists bool
	if err := admin.QueryRow(ctx, sqlDatabaseExists, name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up database %s: %w", name, err)
	}
	if !exists {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("create database %s: %w", name, err)
		}
	}
	dsn, err := pgadmin.WithDatabase(s.admin, name)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := migrations.Up(ctx, conn); err != nil {
		return "", fmt.Errorf("migrate %s: %w", name, err)
	}
	return dsn, nil
}

// dropDatabase removes database name, disconnecting its sessions.
func (s server) dropDatabase(ctx context.Context, name string) error {
	return pgadmin.DropDatabase(ctx, s.admin, name)
}
