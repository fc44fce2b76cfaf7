// Command devrun is `make run`: it brings the whole pipeline up on this
// machine — the local PostgreSQL (when DATABASE_URL is unset), migrations,
// mqwriter, mqreader (all 256 partitions), collector, apigw and the streamer
// on the shipped CSV (or, with STREAMER_SOURCE=scrape, scraping SCRAPE_TARGETS,
// or fake dcgm-exporters serving the CSV that it starts itself when no
// target is given) — as separate processes, prints the URLs, and on Ctrl-C
// stops them in order (streamer first, so nothing is left half-sent) and the
// database it started. A previous run that is still alive is stopped first,
// so a second `make run` never trips over the first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpufleet/telemetry/test/pgadmin"
	"github.com/gpufleet/telemetry/test/pglocal"
	"github.com/gpufleet/telemetry/test/stack"
)

type app struct {
	name, defAddr, ready string
	env                  map[string]string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "make run:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "bin", "directory with the built apps")
	flag.Parse()
	root, err := stack.Root()
	if err != nil {
		return err
	}
	binDir, _ := filepath.Abs(filepath.Join(root, *bin))
	runDir := filepath.Join(root, ".local", "run")
	logDir := filepath.Join(runDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	stopPrevious(filepath.Join(runDir, "pids"))

	// SIGHUP too: closing the terminal must stop what this run started (the
	// services run in their own process groups, so the hangup never reaches
	// them), not orphan them streaming into the database.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	dbURL := os.Getenv("DATABASE_URL")
	startedDB := false
	if dbURL == "" {
		dir := filepath.Join(root, ".local", "pg")
		_, running := pglocal.Running(dir)
		c, err := pglocal.Start(ctx, dir)
		if err != nil {
			return fmt.Errorf("local postgres: %w", err)
		}
		if err := c.EnsureDatabase(ctx, "telemetry"); err != nil {
			return err
		}
		dbURL, startedDB = c.URL("telemetry"), !running
		if startedDB {
			defer func() {
				sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := pglocal.Stop(sctx, dir); err != nil {
					fmt.Fprintln(os.Stderr, "stop local postgres:", err)
				}
			}()
		}
	}
	migrate := exec.CommandContext(ctx, filepath.Join(binDir, "migrate"), "up")
	migrate.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	if out, err := migrate.CombinedOutput(); err != nil {
		return fmt.Errorf("migrate up: %w: %s", err, out)
	}

	csvPath := os.Getenv("STREAMER_CSV_PATH")
	if csvPath == "" {
		csvPath = filepath.Join(root, "deployments", "data", "dcgm_metrics_20250718_134233.csv")
	}
	queue := os.Getenv("QUEUE_BACKEND")
	if queue == "" {
		queue = "postgres"
	}
	// A realistic pace and a short retention, so a day-long run stays small
	// (README: disk use): each GPU's samples every 30 s, raw samples kept
	// one day. Both can be overridden from the environment.
	scrape, retention := envOr("STREAMER_SCRAPE_INTERVAL", "30s"), envOr("TELEMETRY_RETENTION", "24h")
	apps := []app{
		{"mqwriter", "127.0.0.1:8081", "/readyz", map[string]string{"DATABASE_URL": dbURL}},
		{"mqreader", "127.0.0.1:8082", "/readyz", map[string]string{"DATABASE_URL": dbURL, "PARTITIONS": "0-255"}},
		{"collector", "127.0.0.1:8083", "/healthz", map[string]string{"DATABASE_URL": dbURL, "QUEUE_BACKEND": queue,
			"MQ_READER_URLS": "http://127.0.0.1:8082", "TELEMETRY_RETENTION": retention}},
		{"apigw", "127.0.0.1:8080", "/readyz", map[string]string{"DATABASE_URL": dbURL}},
		{"streamer", "127.0.0.1:8084", "/healthz", map[string]string{"QUEUE_BACKEND": queue, "STREAMER_CSV_PATH": csvPath,
			"MQ_WRITER_URL": "http://127.0.0.1:8081", "STREAMER_SCRAPE_INTERVAL": scrape}},
	}
	if queue == "nats" {
		// The streamer and collector talk to NATS directly; an embedded
		// JetStream server (fsync on every write) replaces mqwriter/mqreader.
		natsURL := os.Getenv("NATS_URL")
		if natsURL == "" {
			natsURL = "nats://127.0.0.1:4223"
			apps[1] = app{"natsd", "127.0.0.1:8086", "/readyz", map[string]string{
				"NATS_ADDR": "127.0.0.1:4223", "NATS_STORE_DIR": filepath.Join(root, ".local", "nats")}}
			apps = apps[1:]
		} else {
			apps = apps[2:]
		}
		for _, a := range apps {
			a.env["NATS_URL"] = natsURL
		}
	}
	source, fakes := streamerSource(runDir)
	if fakes != nil {
		apps = append([]app{*fakes}, apps...) // started first, stopped last
		apps[len(apps)-1].env["SCRAPE_TARGETS_FILE"] = fakes.env["FAKE_DCGM_TARGETS_FILE"]
	}
	var procs []*stack.Proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- { // streamer first, writer last
			if err := procs[i].Stop(50 * time.Second); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}
		_ = os.Remove(filepath.Join(runDir, "pids"))
		fmt.Println("stopped; logs in", logDir)
	}()
	for _, a := range apps {
		addr := a.defAddr
		if v := os.Getenv(strings.ToUpper(a.name) + "_HTTP_ADDR"); v != "" {
			addr = v
		}
		p, err := stack.Start(filepath.Join(binDir, a.name), a.name, addr, logDir, a.env)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		writePIDs(filepath.Join(runDir, "pids"), procs)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = p.WaitReady(rctx, a.ready)
		cancel()
		if err != nil {
			return err
		}
	}
	fmt.Printf(`
GPU telemetry pipeline is running (queue backend: %s, source: %s).
  Dashboard      http://127.0.0.1:8080/   (xdg-open http://127.0.0.1:8080/)
  API            http://127.0.0.1:8080/api/v1/gpus
  Swagger UI     http://127.0.0.1:8080/swagger/
  mqwriter       http://127.0.0.1:8081/metrics   (postgres backend)
  mqreader       http://127.0.0.1:8082/metrics   (postgres backend)
  collector      http://127.0.0.1:8083/metrics
  streamer       http://127.0.0.1:8084/metrics
  database       %s
  logs           %s
Try: curl -s localhost:8080/api/v1/gpus | jq '.gpus | length'
Ctrl-C stops everything.
`, queue, source, pgadmin.Redact(dbURL), logDir)

	exited := make(chan *stack.Proc, len(procs))
	for _, p := range procs {
		go func() { <-p.Done(); exited <- p }()
	}
	select {
	case <-ctx.Done():
		fmt.Println("\nstopping…")
		return nil
	case p := <-exited:
		return fmt.Errorf("%s exited unexpectedly; see %s", p.Name, p.Log)
	}
}

// streamerSource describes the streamer's source for the banner and, for
// STREAMER_SOURCE=scrape with no SCRAPE_TARGETS, SCRAPE_TARGETS_FILE or
// SCRAPE_KUBERNETES_SELECTOR, returns the fake exporters to start: the
// shipped CSV as 31 dcgm-exporters on 127.0.0.1:9400..9430 (FAKE_DCGM_*
// from the environment apply), their URLs in .local/run/scrape-targets.
func streamerSource(runDir string) (string, *app) {
	if !strings.EqualFold(os.Getenv("STREAMER_SOURCE"), "scrape") {
		return "csv", nil
	}
	interval := os.Getenv("SCRAPE_INTERVAL")
	if interval == "" {
		interval = "15s"
	}
	for _, v := range []string{"SCRAPE_TARGETS", "SCRAPE_TARGETS_FILE", "SCRAPE_KUBERNETES_SELECTOR"} {
		if os.Getenv(v) != "" {
			return "scrape " + v + " every " + interval, nil
		}
	}
	targets := filepath.Join(runDir, "scrape-targets")
	return "scrape of fake dcgm-exporters on 127.0.0.1:9400+ every " + interval,
		&app{"fake-dcgm-exporter", "127.0.0.1:9399", "/readyz", map[string]string{"FAKE_DCGM_TARGETS_FILE": targets}}
}

// writePIDs records our children so a later run can stop them.
func writePIDs(path string, procs []*stack.Proc) {
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "%d %s\n", p.PID(), p.Name)
	}
	_ = os.WriteFile(path, []byte(b.String()), 0o644)
}

// stopPrevious stops the apps a previous run left (its supervisor was killed
// without cleaning up). Only PIDs recorded by a previous run, and still
// running one of our binaries, are signalled.
func stopPrevious(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), "/"+f[1]) {
			continue
		}
		fmt.Printf("stopping %s (pid %d) left by a previous run\n", f[1], pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 100 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH); i++ {
			time.Sleep(100 * time.Millisecond) // polling another process's exit: there is no channel to wait on
		}
	}
	_ = os.Remove(path)
}

// envOr is the variable's value, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
