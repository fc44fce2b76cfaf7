package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// Linux fixes it at 100 for user space on every architecture Go supports
// (procfs and prometheus's process collector assume the same).
const clockTicks = 100

// procCPU returns the CPU seconds (user + system) process pid has used, and
// its parent's pid, from /proc/<pid>/stat.
func procCPU(pid int) (seconds float64, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStat(string(b))
}

// parseStat reads ppid (field 4), utime (14) and stime (15) of a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may itself contain spaces and parentheses, so fields are counted from the
// last ')'.
func parseStat(s string) (seconds float64, ppid int, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("parse stat: %d fields after the command name", len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseUint(f[11], 10, 64)
	stime, err3 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, fmt.Errorf("parse stat: bad ppid, utime or stime")
	}
	return float64(utime+stime) / clockTicks, ppid, nil
}

// procComm is the process's command name, "" when it is gone.
func procComm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// metricSums maps a metric name to the sum of all its samples (over every
// label set).
type metricSums map[string]float64

// parseMetrics sums the samples of the wanted metrics in Prometheus text
// exposition format; the others are skipped without being parsed.
func parseMetrics(r io.Reader, wanted ...string) (metricSums, error) {
	want := make(map[string]bool, len(wanted))
	for _, w := range wanted {
		want[w] = true
	}
	out := metricSums{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 || !want[line[:end]] {
			continue
		}
		name, rest := line[:end], line[end:]
		if rest[0] == '{' {
			j := labelsEnd(rest)
			if j < 0 {
				return nil, fmt.Errorf("parse metrics: unterminated labels in %q", line)
			}
			rest = rest[j+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("parse metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("parse metrics: value of %q: %w", line, err)
		}
		if !math.IsNaN(v) {
			out[name] += v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return out, nil
}

// labelsEnd is the index of the '}' closing the label set that s starts
// with, or -1. Label values are quoted and may hold braces, spaces and
// backslash escapes.
func labelsEnd(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++ // the escaped character
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i
		}
	}
	return -1
}

// scrapeClient reads /metrics. The timeout is generous: an app at full
// load on two shared cores may take a while to answer.
var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// scrape fetches baseURL/metrics and sums the wanted metrics.
func scrape(ctx context.Context, baseURL string, wanted ...string) (metricSums, error) {
	return scrapeWith(ctx, baseURL, func(r io.Reader) (metricSums, error) { return parseMetrics(r, wanted...) })
}

// scrapeWith fetches baseURL/metrics and hands the body to parse.
func scrapeWith[T any](ctx context.Context, baseURL string, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return zero, err
	}
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return zero, fmt.Errorf("scrape %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return zero, fmt.Errorf("scrape %s: status %d", baseURL, resp.StatusCode)
	}
	out, err := parse(resp.Body)
	if err != nil {
		return zero, fmt.Errorf("scrape %s: %w", baseURL, err)
	}
	return out, nil
}
