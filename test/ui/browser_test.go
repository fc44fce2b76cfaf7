//go:build ui

package ui

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// chromiumPath is Debian's chromium launcher (`apt-get install chromium`).
const chromiumPath = "/usr/bin/chromium"

// Desktop and phone viewports of the screenshots.
const (
	desktopW, desktopH = 1280, 800
	phoneW, phoneH     = 390, 844
)

// newBrowser starts one headless chromium for the test; each tab is a
// child context (newTab). Cancelling ends chromium and removes its profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath
	if _, err := os.Stat(path); err != nil {
		var lerr error
		if path, lerr = exec.LookPath("chromium"); lerr != nil {
			t.Fatalf("no chromium (%v, %v): install Debian's package as root: apt-get update && apt-get install -y chromium", err, lerr)
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.WindowSize(desktopW, desktopH),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // chromium refuses to run as root with its sandbox
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	// No timeout: the first Do's context bounds the browser's life.
	require.NoError(t, chromedp.Do(bctx), "start chromium")
	return bctx
}

// failures collects what must not happen on a page: console errors and
// assertions, uncaught exceptions, failed loads, HTTP errors, browser-log
// errors. The listener runs on the tab's event goroutine, which alone owns
// urls; it hands each failure to a buffered channel and never blocks (a
// full buffer is itself counted as a failure).
type failures struct {
	ch       chan string // buffered: many failures may come at once
	overflow atomic.Int64
	urls     map[network.RequestID]string // owned by the tab's event goroutine
}

func newFailures() *failures {
	return &failures{ch: make(chan string, 256), urls: map[network.RequestID]string{}}
}

func (f *failures) report(format string, args ...any) {
	select {
	case f.ch <- fmt.Sprintf(format, args...):
	default:
		f.overflow.Add(1)
	}
}

func (f *failures) listen(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, strings.TrimSpace(a.Description+" "+string(a.Value)))
			}
			f.report("console.%s: %s", ev.Type, strings.Join(parts, " "))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		f.report("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, msg)
	case *network.EventRequestWillBeSent:
		f.urls[ev.RequestID] = ev.Request.URL
	case *network.EventLoadingFailed:
		f.report("request failed: %s: %s (canceled %v)", f.urls[ev.RequestID], ev.ErrorText, ev.Canceled)
	case *network.EventResponseReceived:
		if ev.Response.Status >= 400 {
			f.report("HTTP %d for %s", ev.Response.Status, ev.Response.URL)
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			f.report("browser log error: %s %s", ev.Entry.Text, ev.Entry.URL)
		}
	}
}

// drain returns the failures so far.
func (f *failures) drain() []string {
	var out []string
	for {
		select {
		case s := <-f.ch:
			out = append(out, s)
		default:
			if n := f.overflow.Load(); n > 0 {
				out = append(out, fmt.Sprintf("%d more failures did not fit the buffer", n))
			}
			return out
		}
	}
}

// tab is one browser tab with its failure collector.
type tab struct {
	t   *testing.T
	ctx context.Context
	f   *failures
}

// newTab opens a tab of the browser; at the end of the test it checks that
// nothing failed on it.
func newTab(t *testing.T, browser context.Context) *tab {
	t.Helper()
	f := newFailures()
	tctx, cancel := chromedp.NewContext(browser, chromedp.WithListener(f.listen))
	ctx, tcancel := context.WithTimeout(tctx, 3*time.Minute)
	t.Cleanup(func() {
		tcancel()
		cancel()
	})
	tb := &tab{t: t, ctx: ctx, f: f}
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(desktopW, desktopH)))
	t.Cleanup(tb.noFailures)
	return tb
}

// noFailures fails the test for every failure the page had.
func (tb *tab) noFailures() {
	tb.t.Helper()
	for _, f := range tb.f.drain() {
		tb.t.Errorf("page failure: %s", f)
	}
}

func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	require.NoError(tb.t, chromedp.Do(tb.ctx, actions...))
}

// eval evaluates a JavaScript expression and returns its value.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr))
	require.NoError(tb.t, err, "evaluate %s", expr)
	return v
}

// waitFor polls a JavaScript condition until it is true.
func (tb *tab) waitFor(cond string) {
	tb.t.Helper()
	_, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(60*time.Second),
		chromedp.WithPollingInterval(100*time.Millisecond)))
	require.NoError(tb.t, err, "waiting for %s; failures so far: %v", cond, tb.f.drain())
}

// hash is the page's location hash.
func (tb *tab) hash() string {
	tb.t.Helper()
	return eval[string](tb, `location.hash`)
}

// screenshot writes the viewport as a PNG to .local/ui/name.png.
func (tb *tab) screenshot(dir, name string) string {
	tb.t.Helper()
	png, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	require.NoError(tb.t, err)
	require.NoError(tb.t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, name+".png")
	require.NoError(tb.t, os.WriteFile(path, png, 0o644))
	tb.t.Logf("screenshot %s (%d bytes)", path, len(png))
	return path
}
