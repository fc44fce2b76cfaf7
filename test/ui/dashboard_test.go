//go:build ui

package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/test/pgtest"
	"github.com/gpufleet/telemetry/test/stack"
)

// The shipped CSV: 2,470 rows, 247 GPUs on 31 hosts, 10 metrics.
const (
	csvRows  = 2470
	csvGPUs  = 247
	csvHosts = 31
	metrics  = 10
)

var binDir string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	return stack.RunWithBinaries(m, &binDir, nil, "mqwriter", "mqreader", "collector", "streamer", "apigw")
}

// pipeline is the running services over one fresh database.
type pipeline struct {
	*stack.Services
	t      *testing.T
	writer *stack.Proc
	api    *stack.Proc
}

// startPipeline runs mqwriter, mqreader (every partition), collector, apigw
// and a streamer replaying the shipped CSV with each GPU's samples every
// 5 s, forever, so charts have points and the throughput moves.
func startPipeline(t *testing.T) *pipeline {
	t.Helper()
	csvPath, err := stack.ShippedCSVPath()
	require.NoError(t, err)
	p := &pipeline{Services: stack.NewServices(t, binDir, pgtest.NewDatabase(t)), t: t}
	p.Env["MQ_AUTH"] = "none" // the queue's bearer tokens (issue 13) are not what this suite tests
	p.writer = p.Start("mqwriter", map[string]string{})
	reader := p.Start("mqreader", map[string]string{"PARTITIONS": "0-255"})
	p.Start("collector", map[string]string{"MQ_READER_URLS": reader.URL(), "POLL_INTERVAL_MS": "50"})
	p.api = p.Start("apigw", map[string]string{})
	p.Start("streamer", map[string]string{
		"STREAMER_CSV_PATH":        csvPath,
		"STREAMER_SCRAPE_INTERVAL": "5s",
		"MQ_WRITER_URL":            p.writer.URL(),
	})
	return p
}

// injectPoison publishes a message the collector can never parse; it ends
// up a dead letter with its reason. marker is in its payload.
func (p *pipeline) injectPoison() string {
	p.t.Helper()
	marker := "ui-poison-" + uuid.NewString()
	body, err := json.Marshal(map[string]any{"topic": "telemetry", "messages": []map[string]any{
		{"payload": map[string]any{"poison": marker}},
	}})
	require.NoError(p.t, err)
	resp, err := http.Post(p.writer.URL()+"/v1/publish", "application/json", bytes.NewReader(body))
	require.NoError(p.t, err)
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	require.Equal(p.t, http.StatusOK, resp.StatusCode, "publish poison: %s", got)
	return marker
}

// TestDashboard runs one pipeline and one browser; its steps share them
// and run in order (the pipeline takes most of the time).
func TestDashboard(t *testing.T) {
	root, err := stack.Root()
	require.NoError(t, err)
	shots := filepath.Join(root, ".local", "ui")
	browser := newBrowser(t)
	p := startPipeline(t)
	marker := p.injectPoison()

	// Three passes of the CSV are stored: every GPU, a few points per chart.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, p.Count(`SELECT count(*) FROM telemetry_samples`), 3*csvRows, "samples stored")
		assert.Equal(c, csvGPUs, p.Count(`SELECT count(*) FROM gpus`), "GPUs registered")
	}, 3*time.Minute, 200*time.Millisecond, "the pipeline did not store three passes")
	require.Eventually(t, func() bool {
		return p.Count(`SELECT count(*) FROM dead_letters WHERE payload LIKE '%`+marker+`%'`) == 1
	}, time.Minute, 100*time.Millisecond, "the poison message was not dead-lettered")
	base := p.api.URL() + "/"

	t.Run("fleet lists every GPU", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.do(chromedp.Navigate(base))
		tb.waitFor(`document.querySelector('#gpu-table').dataset.drawn === 'true' && document.querySelectorAll('#summary .card').length > 0`)
		require.Equal(t, "#/fleet", tb.hash())
		require.Equal(t, csvGPUs, eval[int](tb, `document.querySelectorAll('#gpu-table tbody tr').length`))
		require.Equal(t, csvGPUs, eval[int](tb, `new Set([...document.querySelectorAll('#gpu-table tbody tr')].map(r => r.dataset.gpu)).size`))
		require.Equal(t, metrics, eval[int](tb, `document.querySelectorAll('#gpu-table thead button[data-sort^="DCGM"]').length`), "a column per metric")
		require.Equal(t, 3, eval[int](tb, `document.querySelectorAll('#gpu-table tbody tr.hot').length`), "three hottest")
		require.Equal(t, 3, eval[int](tb, `document.querySelectorAll('#gpu-table tbody tr.busy').length`), "three busiest")
		require.Equal(t, csvHosts, eval[int](tb, `document.querySelectorAll('#f-host option').length - 1`))
		require.Contains(t, eval[string](tb, `document.querySelector('#summary').textContent`), "p95")
		require.Equal(t, fmt.Sprint(csvGPUs), eval[string](tb, `document.querySelector('#summary .value').textContent`), "the summary covers the fleet")
		tb.screenshot(shots, "fleet")
		// The busiest first: the marked GPUs at the top (docs/dashboard.png).
		tb.do(chromedp.Evaluate[chromedp.Void](`location.hash = '#/fleet?sort=DCGM_FI_DEV_GPU_UTIL&dir=desc'`))
		tb.waitFor(`document.querySelector('#gpu-table').dataset.sort === 'DCGM_FI_DEV_GPU_UTIL:desc'`)
		require.True(t, eval[bool](tb, `document.querySelector('#gpu-table tbody tr').classList.contains('busy')`), "the busiest GPU is marked")
		tb.screenshot(shots, "fleet-busiest")
	})

	t.Run("filters and sort update the URL and the view", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.do(chromedp.Navigate(base))
		tb.waitFor(`document.querySelector('#gpu-table').dataset.drawn === 'true'`)
		// Host order has no direction to choose: the Order select says A to Z
		// (lowest first) and cannot be changed until a metric is the sort.
		require.Equal(t, []any{true, "asc"}, eval[[]any](tb, `[document.querySelector('#f-dir').disabled, document.querySelector('#f-dir').value]`))
		host := eval[string](tb, `document.querySelector('#f-host').options[1].value`)
		want := p.Count(`SELECT count(*) FROM gpus WHERE hostname = '` + host + `'`)
		// Choose the host as a user would: focus the select, change it.
		tb.do(chromedp.Focus(chromedp.CSS("#f-host")))
		tb.do(chromedp.Evaluate[chromedp.Void](`(s => { s.value = s.options[1].value; s.dispatchEvent(new Event('change')); })(document.querySelector('#f-host'))`))
		tb.waitFor(fmt.Sprintf(`location.hash.includes('host=%s') && document.querySelector('#gpu-table').dataset.rows === '%d'`, host, want))
		require.Equal(t, want, eval[int](tb, `document.querySelectorAll('#gpu-table tbody tr').length`))
		require.Equal(t, 0, eval[int](tb, fmt.Sprintf(`[...document.querySelectorAll('#gpu-table tbody tr td:first-child a')].filter(td => td.textContent !== %q).length`, host)))

		// Sort by temperature with the keyboard: focus the column's button, Enter.
		tb.do(chromedp.Focus(chromedp.CSS(`#gpu-table thead button[data-sort="DCGM_FI_DEV_GPU_TEMP"]`)), chromedp.KeyEvent("\r"))
		tb.waitFor(`location.hash.includes('sort=DCGM_FI_DEV_GPU_TEMP') && location.hash.includes('dir=desc') && document.querySelector('#gpu-table').dataset.sort === 'DCGM_FI_DEV_GPU_TEMP:desc'`)
		require.Contains(t, tb.hash(), "host="+host, "the filter stays")
		col := eval[int](tb, `[...document.querySelectorAll('#gpu-table thead th')].findIndex(th => th.querySelector('[data-sort="DCGM_FI_DEV_GPU_TEMP"]'))`)
		temps := eval[[]float64](tb, fmt.Sprintf(`[...document.querySelectorAll('#gpu-table tbody tr')].map(r => parseFloat(r.children[%d].textContent)).filter(v => !isNaN(v))`, col))
		require.NotEmpty(t, temps)
		require.IsNonIncreasing(t, temps, "sorted by temperature, highest first")
		require.Equal(t, []any{false, "desc"}, eval[[]any](tb, `[document.querySelector('#f-dir').disabled, document.querySelector('#f-dir').value]`))

		// A URL opened directly restores the view: the model filter from the hash.
		model := eval[string](tb, `document.querySelector('#f-model').options[1].value`)
		tb.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = '#/fleet?model=' + encodeURIComponent(%q)`, model)))
		wantModel := p.Count(`SELECT count(*) FROM gpus WHERE model_name = '` + model + `'`)
		tb.waitFor(fmt.Sprintf(`document.querySelector('#f-model').value === %q && document.querySelector('#gpu-table').dataset.rows === '%d'`, model, wantModel))
		require.Equal(t, "", eval[string](tb, `document.querySelector('#f-host').value`), "the host filter left the URL, so the view")

		// The summary's metric is in the URL too.
		tb.do(chromedp.Evaluate[chromedp.Void](`(s => { s.value = 'DCGM_FI_DEV_POWER_USAGE'; s.dispatchEvent(new Event('change')); })(document.querySelector('#f-metric'))`))
		tb.waitFor(`location.hash.includes('metric=DCGM_FI_DEV_POWER_USAGE') && document.querySelector('#summary').dataset.metric === 'DCGM_FI_DEV_POWER_USAGE'`)
	})

	gpus := stack.GetJSON[httpapi.GPUList](t, p.api.URL()+"/api/v1/gpus")
	require.Len(t, gpus.GPUs, csvGPUs)
	gpu := gpus.GPUs[0]

	t.Run("a GPU's charts have points for every metric", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.do(chromedp.Navigate(base))
		tb.waitFor(`document.querySelector('#gpu-table').dataset.drawn === 'true'`)
		// Open the GPU from the fleet table, by its link.
		tb.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-gpu=%q] a`, gpu.ID))))
		tb.waitFor(`document.querySelector('#charts').dataset.drawn === 'true'`)
		require.Equal(t, "#/gpu/"+gpu.ID, tb.hash())
		require.Equal(t, "15m", eval[string](tb, `document.querySelector('#charts').dataset.window`), "the default window")
		require.Equal(t, "raw", eval[string](tb, `document.querySelector('#charts figure').dataset.source`), "10 s steps read raw samples")
		require.Equal(t, metrics, eval[int](tb, `document.querySelectorAll('#charts figure').length`), "a chart per metric")
		// Every chart has data points and drew them on its canvas.
		empty := eval[[]string](tb, `[...document.querySelectorAll('#charts figure')].filter(f => !(parseInt(f.dataset.points) > 0)).map(f => f.dataset.metric)`)
		require.Empty(t, empty, "charts without data points")
		blank := eval[[]string](tb, `[...document.querySelectorAll('#charts figure')].filter(f => {
			const c = f.querySelector('canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
			for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return false; return true; }).map(f => f.dataset.metric)`)
		require.Empty(t, blank, "charts that drew nothing")
		require.Contains(t, eval[string](tb, `document.querySelector('#chart-DCGM_FI_DEV_GPU_TEMP figcaption').textContent`), "°C", "units")
		require.Equal(t, metrics, eval[int](tb, `document.querySelectorAll('#charts .plot[role="img"][aria-label*="latest average"]').length`),
			"each chart is labelled for screen readers")
		require.Contains(t, eval[string](tb, `document.querySelector('#gpu-title').textContent`), gpu.Hostname)
		tb.screenshot(shots, "gpu")

		// The raw samples link downloads NDJSON of this GPU.
		lines, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]string](
			`fetch(document.querySelector('#dl-ndjson').href).then(r => r.text()).then(t => t.trim().split('\n'))`, chromedp.EvalAwaitPromise))
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(lines), metrics, "at least one sample per metric")
		var entry httpapi.TelemetryEntry
		require.NoError(t, json.Unmarshal([]byte(lines[0]), &entry))
		require.Equal(t, gpu.ID, entry.GPUUUID)
		require.NotEmpty(t, eval[string](tb, `document.querySelector('#dl-ndjson').getAttribute('download')`))

		// A window change, by keyboard: focus the 1 hour radio, Space.
		tb.do(chromedp.Focus(chromedp.CSS(`#windows input[value="1h"]`)), chromedp.KeyEvent(" "))
		tb.waitFor(`location.hash.includes('window=1h') && document.querySelector('#charts').dataset.window === '1h' && document.querySelector('#charts').dataset.drawn === 'true'`)
		require.Contains(t, eval[string](tb, `document.querySelector('#dl-ndjson').href`), "start_time=")
		require.Equal(t, metrics, eval[int](tb, `[...document.querySelectorAll('#charts figure')].filter(f => parseInt(f.dataset.points) > 0).length`))
		require.Equal(t, "rollup", eval[string](tb, `document.querySelector('#charts figure').dataset.source`), "whole-minute steps read the rollups")
	})

	t.Run("pipeline shows hosts, throughput and the poison message", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.do(chromedp.Navigate(base + "#/pipeline"))
		tb.waitFor(`document.querySelector('#dl-table').dataset.loaded === 'true' && document.querySelector('#host-table').dataset.loaded === 'true'`)
		tb.waitFor(fmt.Sprintf(`[...document.querySelectorAll('#dl-table tbody tr')].some(r => r.textContent.includes(%q))`, marker))
		reason := eval[string](tb, fmt.Sprintf(`[...document.querySelectorAll('#dl-table tbody tr')].find(r => r.textContent.includes(%q)).querySelector('.reason').textContent`, marker))
		require.NotEmpty(t, reason, "the dead letter's reason is shown")
		require.Equal(t, csvHosts, eval[int](tb, `document.querySelectorAll('#host-table tbody tr').length`))
		require.Equal(t, 0, eval[int](tb, `document.querySelectorAll('#host-table tbody tr.stale').length`), "every host is streaming")
		// The second snapshot gives a rate.
		tb.waitFor(`!document.querySelector('#pipe-cards').textContent.includes('measuring')`)
		require.Equal(t, "#/pipeline", tb.hash())
		tb.screenshot(shots, "pipeline")
	})

	t.Run("persisted rate is a minute's average of bursty polls", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.do(chromedp.Navigate(base + "#/pipeline"))
		// The shipped CSV at make run's pace: 2,470 samples in one burst
		// every 30 s (82.3/s), polled every 5 s for five minutes. The rate
		// between two polls reads 0 five times in six.
		type reading struct {
			T, Rate, Span float64
			Polls         int
		}
		readings := eval[[]reading](tb, `(() => {
			const { windowRate } = window.dashboardTesting, polls = [], out = [];
			for (let t = 1000; t <= 1300; t += 5) {
				const n = t < 1002 ? 0 : 2470 * (Math.floor((t - 1002) / 30) + 1);
				const r = windowRate(polls, t, n);
				if (r) out.push({ T: t, Rate: r.rate, Span: r.span, Polls: polls.length });
			}
			return out;
		})()`)
		require.Len(t, readings, 60, "a reading for every poll but the first")
		for _, r := range readings {
			require.LessOrEqual(t, r.Span, 60.0, "t=%v: the window is a minute at most", r.T)
			require.LessOrEqual(t, r.Polls, 13, "t=%v: polls beyond the window are dropped", r.T)
			if r.T >= 1060 {
				require.InDelta(t, 2470.0/30, r.Rate, 0.01, "t=%v: after a minute every reading is the average", r.T)
				require.Equal(t, 60.0, r.Span, "t=%v", r.T)
			}
		}

		// A counter that goes back (a dropped partition took its count
		// along) restarts the window; a poll no newer than the last is no
		// reading.
		restart := eval[[]*reading](tb, `(() => {
			const { windowRate } = window.dashboardTesting, polls = [];
			const r = (t, n) => { const x = windowRate(polls, t, n); return x && { T: t, Rate: x.rate, Span: x.span, Polls: polls.length }; };
			return [r(0, 5000), r(10, 6000), r(20, 100), r(20, 200), r(30, 300)];
		})()`)
		require.Equal(t, []*reading{nil, {T: 10, Rate: 100, Span: 10, Polls: 2}, nil, nil, {T: 30, Rate: 20, Span: 10, Polls: 2}}, restart)
	})

	t.Run("a chart's line bridges empty buckets but not a silence", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.do(chromedp.Navigate(base + "#/pipeline"))
		// 15 minutes in 10 s buckets of samples 30 s apart (make run's
		// pace): two buckets in three are empty. The pipeline was down
		// from bucket 30 to 59 (five minutes).
		cols := eval[[3][]*float64](tb, `(() => {
			const buckets = [];
			for (let k = 0; k < 90; k++) {
				const has = k % 3 === 0 && (k < 30 || k >= 60);
				buckets.push({ start: new Date((1e6 + 10 * k) * 1000).toISOString(), count: has ? 1 : 0, avg: has ? k : null, max: has ? k + 0.5 : null });
			}
			return window.dashboardTesting.chartData(buckets, 10);
		})()`)
		var xs, avgs []float64
		nulls := 0
		for i, x := range cols[0] {
			xs = append(xs, *x)
			if cols[1][i] == nil {
				nulls++
				require.Nil(t, cols[2][i], "avg and max break together")
				continue
			}
			avgs = append(avgs, *cols[1][i])
			require.Equal(t, *cols[1][i]+0.5, *cols[2][i])
		}
		require.True(t, slices.IsSorted(xs), "x in time order: %v", xs)
		require.Equal(t, 1, nulls, "one break, at the five-minute silence; the two empty buckets between samples 30 s apart are bridged")
		require.Equal(t, []float64{0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 60, 63, 66, 69, 72, 75, 78, 81, 84, 87}, avgs)
		require.Nil(t, cols[1][10], "the break is between the last sample before the silence and the first after it")
	})

	t.Run("phone width", func(t *testing.T) {
		tb := newTab(t, browser)
		tb.do(chromedp.EmulateViewport(phoneW, phoneH, chromedp.EmulateMobile))
		tb.do(chromedp.Navigate(base))
		tb.waitFor(`document.querySelector('#gpu-table').dataset.drawn === 'true' && document.querySelectorAll('#summary .card').length > 0`)
		require.LessOrEqual(t, eval[int](tb, `document.documentElement.scrollWidth`), phoneW, "the page does not scroll sideways; the table does, in its box")
		tb.screenshot(shots, "fleet-phone")
		tb.do(chromedp.Navigate(base + "#/gpu/" + gpu.ID + "?window=15m"))
		tb.waitFor(`document.querySelector('#charts').dataset.drawn === 'true'`)
		require.LessOrEqual(t, eval[int](tb, `document.documentElement.scrollWidth`), phoneW)
		tb.screenshot(shots, "gpu-phone")
	})
	entries, err := os.ReadDir(shots)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	t.Logf("screenshots in %s: %s", shots, strings.Join(names, ", "))
}
