// Command devdb manages the project's local PostgreSQL cluster (.local/pg)
// for `make run` and `make test` when DATABASE_URL is unset.
//
//	devdb start   start (or reuse) the cluster, create database "telemetry", print its URL
//	devdb url     print the URL of the running cluster's "telemetry" database
//	devdb stop    stop the cluster
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gpufleet/telemetry/test/pglocal"
	"github.com/gpufleet/telemetry/test/pgtest"
)

const database = "telemetry"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "devdb:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: devdb start|url|stop")
	}
	dir, err := pgtest.LocalDir()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	switch args[0] {
	case "start":
		c, err := pglocal.Start(ctx, dir)
		if err != nil {
			return err
		}
		if err := c.EnsureDatabase(ctx, database); err != nil {
			return err
		}
		fmt.Println(c.URL(database))
	case "url":
		c, ok := pglocal.Running(dir)
		if !ok {
			return fmt.Errorf("no local cluster runs in %s (run: devdb start)", dir)
		}
		fmt.Println(c.URL(database))
	case "stop":
		return pglocal.Stop(ctx, dir)
	default:
		return fmt.Errorf("unknown command %q (want start, url or stop)", args[0])
	}
	return nil
}
