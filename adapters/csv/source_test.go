package csv_test

import (
	"bytes"
	"context"
	stdcsv "encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	csvsource "github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx/promxtest"
	"github.com/gpufleet/telemetry/ports"
	"github.com/gpufleet/telemetry/test/contract/sourcetest"
)

const shippedCSV = "../../deployments/data/dcgm_metrics_20250718_134233.csv"

// clock is a fixed instant outside UTC, to show the source converts it.
var clock = time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("UTC+5", 5*3600))

func fixedNow() time.Time { return clock }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// opts are the options of most tests: one pass, a fixed clock, no noise.
func opts() csvsource.Options {
	return csvsource.Options{Once: true, Now: fixedNow, Logger: quiet(), Registerer: prometheus.NewRegistry()}
}

// drain reads a Once source to its end.
func drain(t *testing.T, src ports.Source) []domain.Point {
	t.Helper()
	var out []domain.Point
	for {
		p, err := src.Next(t.Context())
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, p)
	}
}

func readFrom(t *testing.T, data []byte, o csvsource.Options) []domain.Point {
	t.Helper()
	src, err := csvsource.NewFromReader("variant.csv", bytes.NewReader(data), o)
	require.NoError(t, err)
	return drain(t, src)
}

func shippedRecords(t *testing.T) [][]string {
	t.Helper()
	f, err := os.Open(shippedCSV)
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	recs, err := stdcsv.NewReader(f).ReadAll()
	require.NoError(t, err)
	return recs
}

func encode(t *testing.T, recs [][]string, crlf bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := stdcsv.NewWriter(&buf)
	w.UseCRLF = crlf
	require.NoError(t, w.WriteAll(recs))
	return buf.Bytes()
}

// mapRecords returns a deep copy of recs with f applied to each record
// (the header is record 0).
func mapRecords(recs [][]string, f func(i int, rec []string) []string) [][]string {
	out := make([][]string, len(recs))
	for i, r := range recs {
		out[i] = f(i, append([]string(nil), r...))
	}
	return out
}

func TestShippedFile(t *testing.T) {
	t.Parallel()
	src, err := csvsource.New(shippedCSV, opts())
	require.NoError(t, err)
	require.Equal(t, 2470, src.Rows())
	require.Zero(t, src.Skipped())

	points := drain(t, src)
	require.Len(t, points, 2470)
	gpus, metrics, perHost := map[string]bool{}, map[string]bool{}, map[string]map[string]bool{}
	for i, p := range points {
		require.NoError(t, p.Validate(), "point %d", i)
		require.Equal(t, clock.UTC(), p.Timestamp, "point %d: stamped by the clock, not the CSV's 2025-07-18", i)
		require.Equal(t, time.UTC, p.Timestamp.Location())
		gpus[p.GPUUUID] = true
		metrics[p.MetricName] = true
		if perHost[p.Hostname] == nil {
			perHost[p.Hostname] = map[string]bool{}
		}
		perHost[p.Hostname][p.GPUUUID] = true
	}
	require.Len(t, gpus, 247)
	require.Len(t, metrics, 10)
	require.Len(t, perHost, 31)
	sizes := map[int]int{}
	for _, g := range perHost {
		sizes[len(g)]++
	}
	require.Equal(t, map[int]int{8: 30, 7: 1}, sizes, "30 hosts with 8 GPUs, one with 7")

	first := points[0]
	require.Equal(t, domain.Point{
		Timestamp: clock.UTC(), MetricName: "DCGM_FI_DEV_GPU_UTIL", GPUIndex: 0, Device: "nvidia0",
		GPUUUID: "GPU-5fd4f087-86f3-7a43-b711-4771313afc50", ModelName: "NVIDIA H100 80GB HBM3",
		Hostname: "mtv5-dgx1-hgpu-031", Value: ptr(0),
		LabelsRaw: `DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="mtv5-dgx1-hgpu-031",UUID="GPU-5fd4f087-86f3-7a43-b711-4771313afc50",__name__="DCGM_FI_DEV_GPU_UTIL",device="nvidia0",gpu="0",instance="mtv5-dgx1-hgpu-031:9400",job="dgx_dcgm_exporter",modelName="NVIDIA H100 80GB HBM3"`,
	}, first)
}

func ptr(v float64) *float64 { return &v }

// requireSamePoints compares point by point: a diff of thousands of points
// at once is unreadable (and slow to compute).
func requireSamePoints(t *testing.T, want, got []domain.Point) {
	t.Helper()
	for i := range min(len(want), len(got)) {
		require.Equal(t, want[i], got[i], "point %d", i)
	}
	require.Len(t, got, len(want))
}

// TestFormatVariants reads variants of the shipped file generated here and
// expects exactly the points of the file as shipped.
func TestFormatVariants(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(shippedCSV)
	require.NoError(t, err)
	recs := shippedRecords(t)
	want := readFrom(t, raw, opts())
	require.Len(t, want, 2470)

	// shuffle permutes columns, the same way for every record of a width.
	shuffle := func(_ int, r []string) []string {
		perm := rand.New(rand.NewPCG(1, 2)).Perm(len(r))
		out := make([]string, len(r))
		for i, j := range perm {
			out[i] = r[j]
		}
		return out
	}
	require.NotEqual(t, recs[0], shuffle(0, recs[0]))
	upper := func(i int, r []string) []string {
		if i == 0 {
			for j := range r {
				r[j] = strings.ToUpper(r[j])
			}
		}
		return r
	}
	extra := func(i int, r []string) []string {
		if i == 0 {
			return append(append([]string{"cluster"}, r...), "scrape_id", "gpu_uuid")
		}
		return append(append([]string{"dc-1"}, r...), "42", "not-the-uuid-column")
	}
	rename := map[string]string{"gpu_id": "gpu_index", "uuid": "gpu_uuid", "modelName": "model_name",
		"Hostname": "hostname", "labels_raw": "labels"}
	aliases := func(i int, r []string) []string {
		if i == 0 {
			for j, h := range r {
				if n, ok := rename[h]; ok {
					r[j] = n
				}
			}
		}
		return r
	}
	dropTimestamp := func(_ int, r []string) []string { return r[1:] }
	bom := func(b []byte) []byte { return append([]byte("\ufeff"), b...) }

	tests := []struct {
		name string
		data []byte
	}{
		{"crlf", encode(t, recs, true)},
		{"bom", bom(raw)},
		{"upper-cased header", encode(t, mapRecords(recs, upper), false)},
		{"shuffled columns", encode(t, mapRecords(recs, shuffle), false)},
		{"extra columns, preferred name wins over alias", encode(t, mapRecords(recs, extra), false)},
		{"aliases", encode(t, mapRecords(recs, aliases), false)},
		{"no timestamp column", encode(t, mapRecords(recs, dropTimestamp), false)},
		{"all at once", bom(encode(t, mapRecords(mapRecords(mapRecords(recs, extra), shuffle), upper), true))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.NotEqual(t, raw, tt.data, "the variant differs from the file")
			requireSamePoints(t, want, readFrom(t, tt.data, opts()))
		})
	}
}

func TestMissingRequiredColumn(t *testing.T) {
	t.Parallel()
	recs := shippedRecords(t)
	tests := []struct {
		drop []string
		want string
	}{
		{[]string{"metric_name"}, `missing required column "metric_name"`},
		{[]string{"gpu_id"}, `missing required column "gpu_id" (also accepted: gpu_index)`},
		{[]string{"uuid"}, `missing required column "uuid" (also accepted: gpu_uuid)`},
		{[]string{"value"}, `missing required column "value"`},
		{[]string{"uuid", "value"}, "missing required column \"uuid\" (also accepted: gpu_uuid)\nmissing required column \"value\""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.drop, "+"), func(t *testing.T) {
			t.Parallel()
			drop := map[int]bool{}
			for i, h := range recs[0] {
				for _, d := range tt.drop {
					if h == d {
						drop[i] = true
					}
				}
			}
			require.Len(t, drop, len(tt.drop))
			data := encode(t, mapRecords(recs, func(_ int, r []string) []string {
				var out []string
				for i, f := range r {
					if !drop[i] {
						out = append(out, f)
					}
				}
				return out
			}), false)
			path := filepath.Join(t.TempDir(), "data.csv")
			require.NoError(t, os.WriteFile(path, data, 0o600))

			_, err := csvsource.New(path, opts())
			require.EqualError(t, err, "csv source "+path+": "+tt.want)
			var mc *csvsource.MissingColumnError
			require.ErrorAs(t, err, &mc)
			require.Equal(t, tt.drop[0], mc.Column)
		})
	}
}

func TestOptionalColumnsMayBeMissing(t *testing.T) {
	t.Parallel()
	data := "Value,GPU_INDEX,Metric_Name,GPU_UUID\n1.5,3,DCGM_FI_DEV_GPU_TEMP,GPU-1\n"
	got := readFrom(t, []byte(data), opts())
	require.Equal(t, []domain.Point{{Timestamp: clock.UTC(), MetricName: "DCGM_FI_DEV_GPU_TEMP", GPUIndex: 3,
		GPUUUID: "GPU-1", Value: ptr(1.5)}}, got)
}

type logLine struct {
	Msg    string `json:"msg"`
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

func TestBadRowsAreSkippedAndCounted(t *testing.T) {
	t.Parallel()
	const good1 = `"t","DCGM_FI_DEV_GPU_UTIL","0","nvidia0","GPU-a","H100","host-a","","","","7","l"`
	const good2 = `"t","DCGM_FI_DEV_GPU_UTIL","1","nvidia1","GPU-b","H100","host-a","","","","8","l"`
	const good3 = `"t","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-c","H100","host-b","","","","",""`
	lines := []struct {
		text   string
		reason string // empty for a good row
	}{
		{`timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw`, ""},
		{good1, ""},
		{`"t","DCGM_FI_DEV_GPU_UTIL","0","nvidia0","GPU-a","H100","host-a","","","","12abc","l"`, csvsource.ReasonBadValue},
		{`"t","DCGM_FI_DEV_GPU_UTIL","0","nvidia0","GPU-a","H100","host-a","","",""`, csvsource.ReasonFieldCount},
		{`"t","DCGM_FI_DEV_GPU_UTIL","0","nvidia0","GPU-a","H100","host-a","","","","1","l","surplus"`, csvsource.ReasonFieldCount},
		{good2, ""},
		{`"t","DCGM_FI_DEV_GPU_UTIL","0","nvidia0","  ","H100","host-a","","","","1","l"`, csvsource.ReasonEmptyUUID},
		{`"t","","0","nvidia0","GPU-a","H100","host-a","","","","1","l"`, csvsource.ReasonEmptyMetric},
		{`"t","DCGM_FI_DEV_GPU_UTIL","zero","nvidia0","GPU-a","H100","host-a","","","","1","l"`, csvsource.ReasonBadGPUIndex},
		{`"t","DCGM_FI_DEV_GPU_UTIL","-1","nvidia0","GPU-a","H100","host-a","","","","1","l"`, csvsource.ReasonBadGPUIndex},
		{`"t","DCGM_FI_DEV_GPU_UTIL","0","nvidia0","GPU-a"x,"H100","host-a","","","","1","l"`, csvsource.ReasonMalformed},
		{good3, ""},
	}
	var text strings.Builder
	wantLog := map[int]string{}
	for i, l := range lines {
		text.WriteString(l.text + "\n")
		if l.reason != "" {
			wantLog[i+1] = l.reason
		}
	}

	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	o := opts()
	o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	o.Registerer = reg
	src, err := csvsource.NewFromReader("bad.csv", strings.NewReader(text.String()), o)
	require.NoError(t, err)

	require.Equal(t, 3, src.Rows())
	require.Equal(t, len(wantLog), src.Skipped())
	got := drain(t, src)
	require.Len(t, got, 3)
	require.Equal(t, []string{"GPU-a", "GPU-b", "GPU-c"}, []string{got[0].GPUUUID, got[1].GPUUUID, got[2].GPUUUID})
	require.Equal(t, ptr(7), got[0].Value)
	require.Nil(t, got[2].Value)

	gotLog := map[int]string{}
	for _, l := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		var ll logLine
		require.NoError(t, json.Unmarshal(l, &ll))
		if ll.Msg == "csv row skipped" {
			gotLog[ll.Line] = ll.Reason
		}
	}
	require.Equal(t, wantLog, gotLog, "each bad row is logged with its line number and reason")

	require.NoError(t, testutil.GatherAndCompare(reg, skipsExposition(map[string]int{
		"bad_gpu_id": 2, "bad_value": 1, "empty_metric_name": 1, "empty_uuid": 1, "field_count": 2, "malformed_csv": 1,
	}), "streamer_csv_rows_skipped_total"))
	promxtest.RequireLintClean(t, reg)
}

func TestSharedRegistererSumsSkips(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	data := "metric_name,gpu_id,uuid,value\nm,0,GPU-a,1\nm,x,GPU-a,1\n"
	for range 2 {
		o := opts()
		o.Registerer = reg
		_, err := csvsource.NewFromReader("a.csv", strings.NewReader(data), o)
		require.NoError(t, err)
	}
	n, err := testutil.GatherAndCount(reg, "streamer_csv_rows_skipped_total")
	require.NoError(t, err)
	require.Equal(t, 6, n, "one series per reason, shared")
	require.NoError(t, testutil.GatherAndCompare(reg, skipsExposition(map[string]int{"bad_gpu_id": 2}),
		"streamer_csv_rows_skipped_total"), "every other reason at 0")
}

// skipsExposition is streamer_csv_rows_skipped_total as /metrics shows it:
// every reason, those not in counts at 0.
func skipsExposition(counts map[string]int) io.Reader {
	var b strings.Builder
	b.WriteString("# HELP streamer_csv_rows_skipped_total CSV rows skipped because they could not be parsed, by reason.\n" +
		"# TYPE streamer_csv_rows_skipped_total counter\n")
	for _, r := range []string{"bad_gpu_id", "bad_value", "empty_metric_name", "empty_uuid", "field_count", "malformed_csv"} {
		fmt.Fprintf(&b, "streamer_csv_rows_skipped_total{reason=%q} %d\n", r, counts[r])
	}
	return strings.NewReader(b.String())
}

func TestValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want *float64
	}{
		{"", nil},
		{"   ", nil},
		{"9.223372036854775e18", nil},
		{"9223372036854775794", nil},
		{"4294967295", nil},
		{"2147483632", nil},
		{"140737488355328", nil},
		{"NaN", nil},
		{"Inf", nil},
		{"-Inf", nil},
		{"0", ptr(0)},
		{"100", ptr(100)},
		{" 1980.5 ", ptr(1980.5)},
		{"-3.25", ptr(-3.25)},
		{"4294967294", ptr(4294967294)},
		{"1e3", ptr(1000)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			data := "metric_name,gpu_id,uuid,value\nm,0,GPU-a,\"" + tt.in + "\"\n"
			got := readFrom(t, []byte(data), opts())
			require.Len(t, got, 1)
			require.Equal(t, tt.want, got[0].Value)
			require.NoError(t, got[0].Validate())
		})
	}
}

func TestLoopWrapsAround(t *testing.T) {
	t.Parallel()
	data := "metric_name,gpu_id,uuid,value\nm,0,GPU-a,1\nm,x,GPU-bad,1\nm,1,GPU-b,2\nm,2,GPU-c,3\n"
	var ticks atomic.Int64
	src, err := csvsource.NewFromReader("loop.csv", strings.NewReader(data), csvsource.Options{
		Logger: quiet(),
		Now:    func() time.Time { return time.Unix(ticks.Add(1), 0) },
	})
	require.NoError(t, err)
	require.Equal(t, 3, src.Rows())
	want := []string{"GPU-a", "GPU-b", "GPU-c"}
	for i := range 10 {
		p, err := src.Next(t.Context())
		require.NoError(t, err)
		require.Equal(t, want[i%3], p.GPUUUID, "call %d", i)
		require.Equal(t, time.Unix(int64(i+1), 0).UTC(), p.Timestamp, "each call reads the clock once")
	}
}

func TestOnceEndsWithEOF(t *testing.T) {
	t.Parallel()
	src, err := csvsource.NewFromReader("once.csv", strings.NewReader("metric_name,gpu_id,uuid,value\nm,0,GPU-a,1\n"), opts())
	require.NoError(t, err)
	_, err = src.Next(t.Context())
	require.NoError(t, err)
	for range 3 {
		_, err = src.Next(t.Context())
		require.ErrorIs(t, err, io.EOF)
	}
}

func TestNoValidRows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		once bool
		want error // from the constructor; nil means Next returns io.EOF
		msg  string
	}{
		{name: "header only, looping", data: "metric_name,gpu_id,uuid,value\n", want: csvsource.ErrNoRows},
		{name: "only bad rows, looping", data: "metric_name,gpu_id,uuid,value\nm,x,GPU-a,1\n", want: csvsource.ErrNoRows,
			msg: "(1 skipped)"},
		{name: "header only, once", data: "metric_name,gpu_id,uuid,value\n", once: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := opts()
			o.Once = tt.once
			src, err := csvsource.NewFromReader("empty.csv", strings.NewReader(tt.data), o)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				require.Contains(t, err.Error(), tt.msg)
				return
			}
			require.NoError(t, err)
			_, err = src.Next(t.Context())
			require.ErrorIs(t, err, io.EOF)
		})
	}
}

func TestZeroSourceDoesNotSpin(t *testing.T) {
	t.Parallel()
	var src csvsource.Source
	_, err := src.Next(t.Context())
	require.ErrorIs(t, err, csvsource.ErrNoRows)
}

func TestInputErrors(t *testing.T) {
	t.Parallel()
	data := "metric_name,gpu_id,uuid,value\nm,0,GPU-a,1\n" // 42 bytes
	big := filepath.Join(t.TempDir(), "big.csv")
	require.NoError(t, os.WriteFile(big, []byte(data), 0o600))
	tests := []struct {
		name  string
		build func() (*csvsource.Source, error)
		want  string
		is    error
	}{
		{name: "empty input", want: "csv source r.csv: empty input: no header row", build: func() (*csvsource.Source, error) {
			return csvsource.NewFromReader("r.csv", strings.NewReader(""), opts())
		}},
		{name: "reader over the limit", want: "csv source r.csv: input is over the 41 byte limit", build: func() (*csvsource.Source, error) {
			o := opts()
			o.MaxBytes = 41
			return csvsource.NewFromReader("r.csv", strings.NewReader(data), o)
		}},
		{name: "file over the limit", want: "csv source " + big + ": file is 42 bytes, over the 41 byte limit", build: func() (*csvsource.Source, error) {
			o := opts()
			o.MaxBytes = 41
			return csvsource.New(big, o)
		}},
		{name: "missing file", is: fs.ErrNotExist, build: func() (*csvsource.Source, error) {
			return csvsource.New(filepath.Join(t.TempDir(), "nope.csv"), opts())
		}},
		{name: "read error", is: io.ErrUnexpectedEOF, build: func() (*csvsource.Source, error) {
			return csvsource.NewFromReader("r.csv", io.MultiReader(strings.NewReader(data), errReader{}), opts())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.build()
			require.Error(t, err)
			if tt.want != "" {
				require.EqualError(t, err, tt.want)
			}
			if tt.is != nil {
				require.ErrorIs(t, err, tt.is)
			}
		})
	}

	t.Run("exactly at the limit", func(t *testing.T) {
		t.Parallel()
		o := opts()
		o.MaxBytes = int64(len(data))
		require.Len(t, readFrom(t, []byte(data), o), 1)
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestContextDone(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Unix(0, 0))
	t.Cleanup(cancel2)
	for name, ctx := range map[string]context.Context{"canceled": canceled, "deadline": expired} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src, err := csvsource.New(shippedCSV, csvsource.Options{Logger: quiet()})
			require.NoError(t, err)
			_, err = src.Next(ctx)
			require.Equal(t, ctx.Err(), err)
		})
	}
}

func TestValueIsNotShared(t *testing.T) {
	t.Parallel()
	src, err := csvsource.NewFromReader("v.csv", strings.NewReader("metric_name,gpu_id,uuid,value\nm,0,GPU-a,1\n"),
		csvsource.Options{Logger: quiet()})
	require.NoError(t, err)
	p, err := src.Next(t.Context())
	require.NoError(t, err)
	*p.Value = 99
	p, err = src.Next(t.Context())
	require.NoError(t, err)
	require.Equal(t, ptr(1), p.Value)
}

// TestConcurrentNext hands every row of one pass out exactly once across
// concurrent callers.
func TestConcurrentNext(t *testing.T) {
	t.Parallel()
	src, err := csvsource.New(shippedCSV, opts())
	require.NoError(t, err)
	const workers = 4
	results := make(chan []string, workers) // one result per worker, never blocks
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var keys []string
			for {
				p, err := src.Next(context.Background())
				if err != nil {
					results <- append(keys, "err:"+err.Error())
					return
				}
				keys = append(keys, p.GPUUUID+"/"+p.MetricName)
			}
		})
	}
	wg.Wait()
	close(results)
	seen := map[string]int{}
	for keys := range results {
		require.Equal(t, "err:EOF", keys[len(keys)-1])
		for _, k := range keys[:len(keys)-1] {
			seen[k]++
		}
	}
	require.Len(t, seen, 2470)
	for k, n := range seen {
		require.Equal(t, 1, n, k)
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	sourcetest.Run(t, func(t testing.TB, records [][]string) ports.Source {
		src, err := csvsource.New(sourcetest.CSVFile(t, records), csvsource.Options{Logger: quiet(), Registerer: prometheus.NewRegistry()})
		require.NoError(t, err)
		return src
	}, sourcetest.Capabilities{Replay: true})
}

// A directory of CSV parts (the Helm chart splits the dump to stay under the
// ConfigMap size limit), each with its own header, reads as the whole file.
func TestDirectoryOfParts(t *testing.T) {
	t.Parallel()
	whole, err := os.ReadFile(shippedCSV)
	require.NoError(t, err)
	lines := strings.SplitAfter(string(whole), "\n")
	header, body := lines[0], lines[1:]
	dir := t.TempDir()
	// Three parts, written out of name order, with a non-CSV file beside them.
	for i, part := range [][]string{body[:1000], body[1000:2000], body[2000:]} {
		name := filepath.Join(dir, fmt.Sprintf("part-%03d.csv", 2-i))
		require.NoError(t, os.WriteFile(name, []byte(header+strings.Join(part, "")), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("not a csv"), 0o644))

	src, err := csvsource.New(dir, csvsource.Options{Once: true, Logger: quiet()})
	require.NoError(t, err)
	require.Equal(t, 2470, src.Rows())
	require.Equal(t, 0, src.Skipped())
	gpus := map[string]bool{}
	for {
		p, err := src.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		gpus[p.GPUUUID] = true
	}
	require.Len(t, gpus, 247)

	_, err = csvsource.New(t.TempDir(), csvsource.Options{Logger: quiet()})
	require.ErrorContains(t, err, "no *.csv file")
}
