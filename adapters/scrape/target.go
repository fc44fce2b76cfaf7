package scrape

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/telemetry/domain"
)

// keepBufferBytes is the largest body buffer a target keeps between scrapes;
// a larger one (a rare big body) is dropped so that a thousand targets do not
// each pin their largest body ever.
const keepBufferBytes = 4 << 20

// target is one endpoint's scrape loop. Every field is owned by run.
type target struct {
	src      *Source
	url      string
	instance string // host:port, as Prometheus labels it
	timeout  string // Options.Timeout in seconds, for the exporter's information
	buf      bytes.Buffer
	gz       *gzip.Reader
	up       bool // the last scrape succeeded: failures are logged when it flips
	scrapes  int
}

func newTarget(s *Source, rawURL string) (*target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse target: %w", err)
	}
	return &target{src: s, url: rawURL, instance: u.Host, up: true,
		timeout: strconv.FormatFloat(s.opts.Timeout.Seconds(), 'f', -1, 64)}, nil
}

// run scrapes at this target's slot of every interval until ctx ends.
func (t *target) run(ctx context.Context) {
	interval := t.src.opts.Interval
	now := time.Now()
	next := now.Truncate(interval).Add(offset(t.url, interval))
	if next.Before(now) {
		next = next.Add(interval)
	}
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-ctx.Done():
			return
		}
		points := t.scrape(ctx)
		for _, p := range points {
			select {
			case t.src.out <- p:
			case <-ctx.Done():
				return
			}
		}
		// Rounds whose slot passed while this one was still scraped or
		// handed out are skipped, not queued (see the package comment).
		next = next.Add(interval)
		if late := time.Since(next); late >= 0 {
			missed := late/interval + 1
			t.src.m.roundsSkipped.WithLabelValues(t.url).Add(float64(missed))
			next = next.Add(missed * interval)
		}
		timer.Reset(time.Until(next))
	}
}

// scrape fetches and parses the target once, records the outcome in the
// metrics, and returns the points; nil when the scrape failed or ctx ended.
func (t *target) scrape(ctx context.Context) []domain.Point {
	m := t.src.m
	started := time.Now()
	scraped := t.src.opts.Now().UTC().Round(0)
	sctx, cancel := context.WithTimeout(ctx, t.src.opts.Timeout)
	body, contentType, reason, err := t.fetch(sctx)
	cancel()
	if ctx.Err() != nil {
		return nil // stopping or removed: not the target's failure
	}
	if err != nil {
		elapsed := time.Since(started).Seconds()
		m.errors.WithLabelValues(t.url, reason).Inc()
		m.up.WithLabelValues(t.url).Set(0)
		m.duration.WithLabelValues(t.url).Set(elapsed)
		m.durations.Observe(elapsed)
		if t.up || t.scrapes == 0 {
			t.src.opts.Logger.Warn("scrape target down", "target", t.url, "reason", reason, "err", err)
		}
		t.up = false
		t.scrapes++
		return nil
	}
	res := parseBody(body, contentType, t.instance, scraped)
	if t.buf.Cap() > keepBufferBytes {
		t.buf = bytes.Buffer{}
	}
	elapsed := time.Since(started).Seconds()
	m.up.WithLabelValues(t.url).Set(1)
	m.duration.WithLabelValues(t.url).Set(elapsed)
	m.durations.Observe(elapsed)
	m.samples.WithLabelValues(t.url).Add(float64(len(res.points)))
	m.ignored.Add(float64(res.ignored))
	for r, n := range res.skipped {
		m.skipped.WithLabelValues(r).Add(float64(n))
	}
	if !t.up {
		t.src.opts.Logger.Info("scrape target up", "target", t.url)
	}
	if len(res.skipped) > 0 && t.scrapes == 0 {
		t.src.opts.Logger.Warn("scrape target serves unusable DCGM series", "target", t.url, "skipped", res.skipped)
	}
	t.up = true
	t.scrapes++
	return res.points
}

// fetch GETs the target and returns its body (valid until the next fetch)
// and content type, or the reason and error of the failure.
func (t *target) fetch(ctx context.Context) (body []byte, contentType, reason string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return nil, "", ErrConnection, fmt.Errorf("scrape %s: %w", t.url, err)
	}
	req.Header.Set("Accept", acceptHeader)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("User-Agent", "gpufleet-streamer")
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", t.timeout)
	resp, err := t.src.opts.Client.Do(req)
	if err != nil {
		return nil, "", failure(ctx, err, ErrConnection), fmt.Errorf("scrape %s: %w", t.url, err)
	}
	defer func() {
		// Drain a little so a kept-alive connection can be reused; a body
		// left larger than that closes the connection instead.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return nil, "", ErrHTTPStatus, fmt.Errorf("scrape %s: status %s", t.url, resp.Status)
	}
	var r io.Reader = resp.Body
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		if t.gz == nil {
			t.gz, err = gzip.NewReader(resp.Body)
		} else {
			err = t.gz.Reset(resp.Body)
		}
		if err != nil {
			return nil, "", failure(ctx, err, ErrRead), fmt.Errorf("scrape %s: gzip: %w", t.url, err)
		}
		r = t.gz
	}
	limit := t.src.opts.MaxBodyBytes
	t.buf.Reset()
	n, err := t.buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, "", failure(ctx, err, ErrRead), fmt.Errorf("scrape %s: read body: %w", t.url, err)
	}
	if n > limit {
		return nil, "", ErrBodyTooLarge, fmt.Errorf("scrape %s: body over the %d byte limit", t.url, limit)
	}
	return t.buf.Bytes(), resp.Header.Get("Content-Type"), "", nil
}

// failure names why a request or read failed: the deadline, or otherwise.
func failure(ctx context.Context, err error, otherwise string) string {
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return ErrTimeout
	}
	return otherwise
}
