// Command devrun is `make run`: it brings the whole pipeline up on this
// machine — the local PostgreSQL (when DATABASE_URL is unset), migrations,
// mqwriter, mqreader (all 256 partitions), collector, apigw and the streamer
// on the shipped CSV (or, with STREAMER_SOURCE=scrape, scraping SCRAPE_TARGETS,
// or fake dcgm-exporters serving the CSV that it starts itself when no
// target is given) — as separate processes, prints the URLs, and on Ctrl-C
// stops them in order (streamer first, so nothing is left half-sent) and the
// database it started. SIGINT, SIGTERM and SIGHUP (a closed terminal) all
// stop everything. A previous run that is still alive is stopped first, so
// a second `make run` never trips over the first; a PostgreSQL cluster a
// killed run left behind is reused, said so, and stopped at the end, while
// one started by make db-start or make test is reused and left running.
// When an app cannot start, the last line printed is its own reason.
// Every run generates fresh queue tokens, gives them to every app and
// writes them to .local/run/tokens.env.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
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
	note                 string // what the banner says the app is for
}

// addr is where a is started: its default, unless <NAME>_HTTP_ADDR moves it.
func (a app) addr() string {
	return cmp.Or(os.Getenv(strings.ToUpper(a.name)+"_HTTP_ADDR"), a.defAddr)
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
	if dbURL == "" {
		dir := filepath.Join(root, ".local", "pg")
		marker := filepath.Join(runDir, "pg-started-by-run")
		_, running := pglocal.Running(dir)
		// A cluster this command started and a killed run left behind is
		// adopted and stopped at the end like a fresh one; one started by
		// make db-start or make test is theirs, and stays.
		leftover := running && startedByRun(marker, dir)
		switch {
		case leftover:
			fmt.Printf("reusing the PostgreSQL cluster a previous make run left running in %s; it stops when this run ends\n", dir)
		case running:
			fmt.Printf("reusing the PostgreSQL cluster already running in %s (make db-start or make test started it); "+
				"it keeps running after this run (make db-stop stops it)\n", dir)
		}
		c, err := pglocal.Start(ctx, dir)
		if err != nil {
			return fmt.Errorf("local postgres: %w", err)
		}
		if !running || leftover {
			_ = os.WriteFile(marker, []byte(postmasterPID(dir)), 0o644)
			defer func() {
				sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := pglocal.Stop(sctx, dir); err != nil {
					fmt.Fprintln(os.Stderr, "stop local postgres:", err)
					return
				}
				_ = os.Remove(marker)
				fmt.Println("stopped the local PostgreSQL")
			}()
		}
		if err := c.EnsureDatabase(ctx, "telemetry"); err != nil {
			return err
		}
		dbURL = c.URL("telemetry")
	}
	migrate := exec.CommandContext(ctx, filepath.Join(binDir, "migrate"), "up")
	migrate.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	if out, err := migrate.CombinedOutput(); err != nil {
		return fmt.Errorf("migrate up: %w: %s", err, out)
	}

	csvPath := os.Getenv("STREAMER_CSV_PATH")
	if csvPath == "" {
		csvPath = filepath.Join(root, filepath.FromSlash(stack.ShippedCSV))
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
		{"mqwriter", "127.0.0.1:8081", "/readyz", map[string]string{"DATABASE_URL": dbURL}, "our queue on PostgreSQL: publish"},
		{"mqreader", "127.0.0.1:8082", "/readyz", map[string]string{"DATABASE_URL": dbURL, "PARTITIONS": "0-255"}, "our queue on PostgreSQL: lease, ack"},
		{"collector", "127.0.0.1:8083", "/healthz", map[string]string{"DATABASE_URL": dbURL, "QUEUE_BACKEND": queue,
			"MQ_READER_URLS": "http://127.0.0.1:8082", "TELEMETRY_RETENTION": retention}, ""},
		{"apigw", "127.0.0.1:8080", "/readyz", map[string]string{"DATABASE_URL": dbURL}, ""},
		{"streamer", "127.0.0.1:8084", "/healthz", map[string]string{"QUEUE_BACKEND": queue, "STREAMER_CSV_PATH": csvPath,
			"MQ_WRITER_URL": "http://127.0.0.1:8081", "STREAMER_SCRAPE_INTERVAL": scrape}, ""},
	}
	queueLabel := queue // the banner's name for the queue
	if queue == "nats" {
		// The streamer and collector talk to NATS directly; an embedded
		// JetStream server (fsync on every write) replaces mqwriter/mqreader.
		natsURL := os.Getenv("NATS_URL")
		if natsURL == "" {
			natsURL = "nats://127.0.0.1:4223"
			store := filepath.Join(root, ".local", "nats")
			apps[1] = app{"natsd", "127.0.0.1:8086", "/readyz", map[string]string{
				"NATS_ADDR": "127.0.0.1:4223", "NATS_STORE_DIR": store}, "JetStream on " + natsURL + ", store " + store}
			apps = apps[1:]
		} else {
			apps = apps[2:]
			queueLabel = "nats at " + natsURL
		}
		for _, a := range apps {
			a.env["NATS_URL"] = natsURL
		}
	}
	// Fresh queue tokens for every run, given to every app and written
	// where a user can source them to call the queue (README: Queue
	// authentication).
	tokens, err := newTokens(filepath.Join(runDir, "tokens.env"))
	if err != nil {
		return err
	}
	for _, a := range apps {
		maps.Copy(a.env, tokens)
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
		p, err := stack.Start(filepath.Join(binDir, a.name), a.name, a.addr(), logDir, a.env)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		writePIDs(filepath.Join(runDir, "pids"), procs)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = p.WaitReady(rctx, a.ready)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				fmt.Println("\nstopping…")
				return nil
			}
			return fmt.Errorf("%s did not start (its log: %s):\n%s", a.name, p.Log, whyNotStarted(p.Log))
		}
	}
	fmt.Print(banner(queueLabel, source, apps, [][2]string{
		{"database", pgadmin.Redact(dbURL)},
		{"logs", logDir},
		{"queue tokens", filepath.Join(runDir, "tokens.env") + `   (. it, then curl -H "Authorization: Bearer $MQ_PUBLISH_TOKEN" …; README: Queue authentication)`},
	}))

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

// bannerColumn is the width of the banner's names (fake-dcgm-exporter).
const bannerColumn = 18

// banner is what make run prints once every app is ready: the API's URLs,
// then each app it started at the address it was started on, with what it
// is for, then the rows given.
func banner(queue, source string, apps []app, rows [][2]string) string {
	var b strings.Builder
	row := func(name, value string) { fmt.Fprintf(&b, "  %-*s %s\n", bannerColumn, name, value) }
	var api string
	for _, a := range apps {
		if a.name == "apigw" {
			api = "http://" + a.addr()
		}
	}
	fmt.Fprintf(&b, "\nGPU telemetry pipeline is running (queue backend: %s, source: %s).\n", queue, source)
	row("Dashboard", api+"/   (xdg-open "+api+"/)")
	row("API", api+"/api/v1/gpus")
	row("Swagger UI", api+"/swagger/")
	for _, a := range apps {
		if a.name == "apigw" {
			continue
		}
		v := "http://" + a.addr() + "/metrics"
		if a.note != "" {
			v += "   (" + a.note + ")"
		}
		row(a.name, v)
	}
	for _, r := range rows {
		row(r[0], r[1])
	}
	fmt.Fprintf(&b, "Try: curl -s %s/api/v1/gpus | jq '.gpus | length'\nCtrl-C stops everything.\n", api)
	return b.String()
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
		&app{"fake-dcgm-exporter", "127.0.0.1:9399", "/readyz", map[string]string{"FAKE_DCGM_TARGETS_FILE": targets}, "the CSV served as dcgm-exporters"}
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
// without cleaning up), one at a time in the order a normal stop uses:
// the reverse of the start order, streamer first and writer last, so no
// app loses the one it calls while it still has work in flight. Only PIDs
// recorded by a previous run, and still running one of our binaries, are
// signalled.
func stopPrevious(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	slices.Reverse(lines)
	for _, line := range lines {
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

// newTokens generates a publish and a consume token (32 random bytes each,
// base64url), writes them to path as MQ_PUBLISH_TOKEN=… and
// MQ_CONSUME_TOKEN=… (mode 0600: they are credentials), and returns the
// environment that gives every app them (stack.TokenEnv).
func newTokens(path string) (map[string]string, error) {
	gen := func() (string, error) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("queue token: %w", err)
		}
		return base64.RawURLEncoding.EncodeToString(b), nil
	}
	publish, err := gen()
	if err != nil {
		return nil, err
	}
	consume, err := gen()
	if err != nil {
		return nil, err
	}
	// Remove first: WriteFile keeps the mode of a file that exists.
	_ = os.Remove(path)
	body := "# Queue tokens of the running `make run` (new each run). Use: . " + path + "\n" +
		"MQ_PUBLISH_TOKEN=" + publish + "\nMQ_CONSUME_TOKEN=" + consume + "\n" +
		"# QUEUE_BACKEND=nats: the same secrets are the passwords of natsd's users publisher and consumer.\n" +
		"NATS_PUBLISHER_PASSWORD=" + publish + "\nNATS_CONSUMER_PASSWORD=" + consume + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return nil, fmt.Errorf("write queue tokens: %w", err)
	}
	return stack.TokenEnv(publish, consume), nil
}

// whyNotStarted is the line of an app's log that says why it did not start:
// the "start: …" line platform.Main prints last, or else the last line.
func whyNotStarted(logPath string) string {
	b, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "start: ") {
			return lines[i]
		}
	}
	if last := lines[len(lines)-1]; last != "" {
		return last
	}
	return "it exited or did not answer; nothing in its log"
}

// postmasterPID is the server's PID from dir's postmaster.pid ("" when
// none): it tells this run's cluster from one started since by others.
func postmasterPID(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return ""
	}
	pid, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(pid)
}

// startedByRun reports whether the cluster running in dir is the one a
// make run started (its marker names the same server PID).
func startedByRun(marker, dir string) bool {
	b, err := os.ReadFile(marker)
	pid := postmasterPID(dir)
	return err == nil && pid != "" && strings.TrimSpace(string(b)) == pid
}

// envOr is the variable's value, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
