package main

import (
	"context"
	"fmt"
	"os"

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
	if err := pgadmin.EnsureDatabase(ctx, s.admin, name); err != nil {
		return "", err
	}
	return pgadmin.Migrate(ctx, s.admin, name)
}

// dropDatabase removes database name, disconnecting its sessions.
func (s server) dropDatabase(ctx context.Context, name string) error {
	return pgadmin.DropDatabase(ctx, s.admin, name)
}
