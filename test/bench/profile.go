package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gpufleet/telemetry/test/stack"
)

// profile is one app's CPU profile over a measured window.
type profile struct {
	App  string   `json:"app"`
	File string   `json:"file"`
	Top  []string `json:"top,omitempty"` // go tool pprof -top, the heaviest functions
	Err  string   `json:"error,omitempty"`
}

// profiledRoles are the apps profiled: the first process of each role that
// serves pprof.
var profiledRoles = []string{roleWriter, roleReader, roleCollector, roleStreamer}

// topLines is how many functions of each profile the report keeps.
const topLines = 15

// captureProfiles takes a CPU profile of the first process of each profiled
// role, all at once, over d, writes them to dir and summarises each with
// go tool pprof -top.
func captureProfiles(ctx context.Context, r *running, dir string, d time.Duration) []profile {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return []profile{{Err: err.Error()}}
	}
	var targets []*stack.Proc
	for _, role := range profiledRoles {
		for _, p := range r.procs {
			if r.roles[p.Name] == role {
				targets = append(targets, p)
				break
			}
		}
	}
	out := make([]profile, len(targets))
	var wg sync.WaitGroup
	for i, p := range targets {
		wg.Go(func() {
			file := filepath.Join(dir, fmt.Sprintf("%s-%s.pprof", r.cfg.Backend, r.roles[p.Name]))
			out[i] = profile{App: r.roles[p.Name], File: file}
			if err := fetchProfile(ctx, p.URL(), file, d); err != nil {
				out[i].Err = err.Error()
				return
			}
			top, err := pprofTop(ctx, file)
			if err != nil {
				out[i].Err = err.Error()
			}
			out[i].Top = top
		})
	}
	wg.Wait()
	return out
}

// fetchProfile saves baseURL's /debug/pprof/profile over d to file.
func fetchProfile(ctx context.Context, baseURL, file string, d time.Duration) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", baseURL, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profile %s: status %d: %s (is PPROF=true wired into the app?)", baseURL, resp.StatusCode, bytes.TrimSpace(b))
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: %w", baseURL, err)
	}
	return f.Close()
}

// pprofTop is the table of go tool pprof -top (flat and cumulative
// shares), heaviest first, without its header.
func pprofTop(ctx context.Context, file string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", topLines), file)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %w: %s", err, b)
	}
	var out []string
	header := true
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if header {
			// Keep the "Showing nodes accounting for …" summary; the
			// table starts after the column titles.
			if strings.HasPrefix(line, "Showing nodes") || strings.HasPrefix(line, "Duration:") {
				out = append(out, strings.TrimSpace(line))
			}
			header = !strings.Contains(line, "flat%")
			continue
		}
		out = append(out, strings.TrimRight(line, " "))
	}
	return out, sc.Err()
}

// sqlActiveQueries lists what the run's database's backends are executing
// right now (the harness's own connection excluded): a sample of the
// server's wall time by statement.
const sqlActiveQueries = `SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 90), coalesce(wait_event_type || ':' || wait_event, 'CPU')
FROM pg_stat_activity
WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()`

// statementShare is one statement's share of the server's busy samples.
type statementShare struct {
	Statement string  `json:"statement"`
	Wait      string  `json:"wait"` // wait event, or CPU when none
	Share     float64 `json:"share"`
	Samples   int     `json:"samples"`
}

// sampleServer polls pg_stat_activity every interval until ctx ends and
// returns the statements (with what they waited on) by share of the busy
// samples, largest first: a poor man's profile of PostgreSQL, which needs no
// extension.
func sampleServer(ctx context.Context, r *running, interval time.Duration) []statementShare {
	counts := map[[2]string]int{}
	total := 0
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			out := make([]statementShare, 0, len(counts))
			for k, n := range counts {
				out = append(out, statementShare{Statement: k[0], Wait: k[1], Samples: n, Share: float64(n) / float64(max(total, 1))})
			}
			slices.SortFunc(out, func(a, b statementShare) int { return b.Samples - a.Samples })
			return out[:min(len(out), topLines)]
		case <-t.C:
		}
		rows, err := r.pgPool.Query(ctx, sqlActiveQueries, r.dbName)
		if err != nil {
			continue
		}
		for rows.Next() {
			var k [2]string
			if rows.Scan(&k[0], &k[1]) == nil {
				counts[k]++
				total++
			}
		}
		rows.Close()
	}
}
