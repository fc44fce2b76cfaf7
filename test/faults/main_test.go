//go:build faults

package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gpufleet/telemetry/test/pglocal"
	"github.com/gpufleet/telemetry/test/stack"
)

// apps are the binaries the suite runs, built with the "faults" tag so the
// writer's test-only failpoints exist, and with the race detector.
var apps = []string{"mqwriter", "mqreader", "collector", "streamer", "apigw"}

// Set once by TestMain, read-only afterwards.
var (
	binDir     string          // the built apps, race-built
	plainDir   string          // the same apps without the race detector, for memory bounds
	csvPath    string          // the shipped DCGM dump
	pgDir      string          // the suite's own PostgreSQL cluster
	pg         pglocal.Cluster // running on a fixed port for the whole run
	soakFor    = 5 * time.Minute
	seedOffset int64
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pglocal.Stop(ctx, pgDir); err != nil {
			fmt.Fprintln(os.Stderr, "faults: stop postgres:", err)
		}
		_ = os.RemoveAll(pgDir)
		_ = os.RemoveAll(binDir)
		_ = os.RemoveAll(plainDir)
	}()
	return m.Run()
}

func setup() error {
	if v := os.Getenv("FAULTS_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("FAULTS_SOAK=%q: want a positive Go duration such as 30s", v)
		}
		soakFor = d
	}
	if v := os.Getenv("FAULTS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("FAULTS_SEED=%q: want an integer", v)
		}
		seedOffset = n
	}
	root, err := stack.Root()
	if err != nil {
		return err
	}
	csvPath = filepath.Join(root, filepath.FromSlash(stack.ShippedCSV))
	if binDir, err = os.MkdirTemp("", "faults-bin-"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*stack.BuildTimeout)
	defer cancel()
	// Race-built: newSystem checks the services' logs for race reports.
	if err := stack.BuildFlags(ctx, root, binDir, append([]string{"-tags", "faults"}, stack.RaceFlags...), apps...); err != nil {
		return err
	}
	// Plain: the race detector multiplies a process's memory (mqwriter's
	// RSS after scenario 7's barrage: 62 MiB plain, 549 MiB race-built), so
	// the scenario that bounds memory runs these.
	if plainDir, err = os.MkdirTemp("", "faults-plain-bin-"); err != nil {
		return err
	}
	if err := stack.BuildTags(ctx, root, plainDir, []string{"faults"}, apps...); err != nil {
		return err
	}
	// A cluster of the suite's own, so stopping it (scenario 4) disturbs no
	// other test; the temp dir is made traversable for the server user.
	if pgDir, err = os.MkdirTemp("", "faults-pg-"); err != nil {
		return err
	}
	if err := os.Chmod(pgDir, 0o755); err != nil {
		return err
	}
	if pg, err = pglocal.Start(ctx, pgDir); err != nil {
		return fmt.Errorf("start postgres in %s: %w", pgDir, err)
	}
	return nil
}
