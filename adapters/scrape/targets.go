package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// DefaultPath is the path scraped when a target gives none: dcgm-exporter's.
const DefaultPath = "/metrics"

// Discoverer yields the set of targets to scrape. Targets sends the whole
// current set of target URLs on out, first as soon as it is known and then
// each time it changes, until ctx ends; it returns ctx.Err() then, or an error
// when discovery cannot go on (the targets already sent keep being scraped).
// Sends block until the receiver takes them or ctx ends. adapters/kube
// implements it over EndpointSlices without importing this package.
type Discoverer interface {
	Targets(ctx context.Context, out chan<- []string) error
}

// ParseTarget turns "host:port" into http://host:port/metrics and checks a
// URL: http or https, a host, and /metrics when the path is empty.
func ParseTarget(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty target")
	}
	if !strings.Contains(s, "://") {
		host, port, err := net.SplitHostPort(s)
		if err != nil || host == "" || port == "" {
			return "", fmt.Errorf("target %q: want host:port or a URL", s)
		}
		s = "http://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("target %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("target %q: scheme %q, want http or https", s, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("target %q: no host", s)
	}
	if u.Path == "" {
		u.Path = DefaultPath
	}
	return u.String(), nil
}

// ParseTargets parses a list of targets separated by commas, spaces or
// newlines; '#' starts a comment to the end of its line. The result is
// sorted and free of duplicates. Every bad entry is reported.
func ParseTargets(list string) ([]string, error) {
	var (
		out  []string
		errs []error
	)
	for line := range strings.Lines(list) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
			u, err := ParseTarget(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), errors.Join(errs...)
}

// Static is a Discoverer over a fixed list of target URLs.
type Static []string

// Targets sends the list once and waits for ctx.
func (s Static) Targets(ctx context.Context, out chan<- []string) error {
	select {
	case out <- slices.Clone(s):
	case <-ctx.Done():
		return ctx.Err()
	}
	<-ctx.Done()
	return ctx.Err()
}

// File is a Discoverer over a file of targets in ParseTargets' format, read
// again every Refresh (default 5 s) and sent when its content changed.
// Polling, not inotify: it works the same for a file edited in place and for
// a Kubernetes ConfigMap volume, whose files are swapped by symlink.
type File struct {
	Path    string
	Refresh time.Duration
	Logger  *slog.Logger
}

// Targets reads the file at once and at every Refresh after, sending the
// targets whenever the content changed. A file that is missing or
// unreadable (not written yet, a ConfigMap being swapped) is logged and read
// again at the next Refresh, keeping the current targets; a bad entry is
// logged and the others are used: a half-written file never stops scraping.
// It returns only when ctx ends.
func (f File) Targets(ctx context.Context, out chan<- []string) error {
	logger := f.Logger
	if logger == nil {
		logger = slog.Default()
	}
	refresh := f.Refresh
	if refresh <= 0 {
		refresh = 5 * time.Second
	}
	var (
		last     []byte // content of the last read sent; owned by this call
		sent     bool
		failures int // consecutive failed reads, so a missing file is logged once, not every Refresh
	)
	t := time.NewTicker(refresh)
	defer t.Stop()
	for {
		b, err := os.ReadFile(f.Path)
		switch {
		case err != nil:
			if failures == 0 {
				logger.Warn("targets file unreadable; keeping the current targets and trying again", "path", f.Path, "err", err)
			}
			failures++
		case sent && bytes.Equal(b, last):
			failures = 0
		default:
			failures = 0
			targets, perr := ParseTargets(string(b))
			if perr != nil {
				logger.Warn("targets file has bad entries; scraping the others", "path", f.Path, "err", perr)
			}
			if targets == nil {
				targets = []string{} // an emptied file removes every target
			}
			logger.Info("scrape targets loaded", "path", f.Path, "targets", len(targets))
			select {
			case out <- targets:
			case <-ctx.Done():
				return ctx.Err()
			}
			last, sent = b, true
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
