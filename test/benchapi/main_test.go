package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/adapters/httpapi"
	"github.com/gpufleet/telemetry/test/pgtest"
	"github.com/gpufleet/telemetry/test/stack"
)

const testCSV = "../../" + stack.ShippedCSV

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p90 of 100 is the 90th", ms(hundred...), 0.90, 90 * time.Millisecond},
		{"p100 is the max", ms(1, 5, 9), 1, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, percentile(tt.sorted, tt.p))
		})
	}
}

func TestMsgUUID(t *testing.T) {
	t.Parallel()
	seen := make(map[uuid.UUID]int64, 1<<17)
	for _, base := range []int64{0, 1 << 40} {
		// Plain comparisons: testify's reflection, 3 × 131,072 times under
		// the race detector, took 7 s.
		for g := base; g < base+1<<16; g++ {
			u := msgUUID(g)
			if u.Version() != 4 || u.Variant() != uuid.RFC4122 {
				t.Fatalf("row %d: %s is version %d, variant %s; want a version 4 RFC 4122 UUID", g, u, u.Version(), u.Variant())
			}
			if prev, dup := seen[u]; dup {
				t.Fatalf("rows %d and %d share %s", prev, g, u)
			}
			seen[u] = g
		}
	}
}

func TestDatasetLayout(t *testing.T) {
	t.Parallel()
	gpus, err := readTemplates(context.Background(), testCSV, 247)
	require.NoError(t, err)
	require.Len(t, gpus, 247)
	for _, g := range gpus {
		require.Len(t, g.samples, 10, "gpu %s", g.gpu.UUID)
	}
	newest := time.Date(2025, 7, 18, 20, 42, 34, 0, time.UTC)
	tests := []struct {
		name      string
		gpus      int
		rows      int64
		span      int64
		wantTS    int64
		wantRows  int64 // per window
		wantFirst int64 // first timestamp of a window asked to start at 10^9
	}{
		{"10M over 247 GPUs", 247, 10_000_000, 3600, 4049, 36_000, 4048 - 3600},
		{"whole timestamps", 8, 80 * 30, 10, 30, 100, 19},
		{"partial last timestamp", 8, 80*30 + 5, 10, 31, 100, 20},
		{"window longer than the data", 8, 80 * 5, 3600, 5, 40, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := newDataset(gpus[:tt.gpus], tt.rows, newest)
			require.NoError(t, err)
			require.Equal(t, tt.wantTS, d.timestamps)
			require.Equal(t, newest, d.newest())
			w := d.windowFor(tt.gpus-1, 1e9, tt.span)
			require.Equal(t, tt.wantFirst, w.first)
			require.Less(t, w.last, d.timestamps-1, "a window never includes the partial last timestamp")
			require.Equal(t, tt.wantRows, d.windowRows(w))
			// Every row of the window, as rowAt places it, is the row fill generates.
			row := make([]any, len(copyColumns))
			for k := range d.windowRows(w) {
				ts, id := d.rowAt(w, k)
				d.fill(row, id-1)
				require.Equal(t, id, row[0])
				require.Equal(t, d.gpus[w.gpu].gpu.UUID, row[2])
				require.Equal(t, ts, row[8])
			}
			for gi := range d.gpus {
				require.False(t, d.lastSeen(gi).Before(d.at(d.timestamps-2)))
			}
		})
	}
	_, err = newDataset(gpus[:8], 80, newest)
	require.Error(t, err, "one timestamp cannot hold a window")
}

// TestRunOn loads a small dataset into a fresh database, measures it and
// checks the results file, the schema the load leaves behind and -reuse.
func TestRunOn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		rebuild bool
	}{
		{"rebuild indexes", true},
		{"keep indexes", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := pgtest.NewDatabase(t)
			out := filepath.Join(t.TempDir(), "results.json")
			cfg := config{
				rows: 80*30 + 7, gpus: 8, csvPath: testCSV, loadWorkers: 2, rebuildIndex: tt.rebuild,
				out: out, explain: true, enforce: false,
				measure: measureConfig{requests: 12, warmup: 2, follow: 3, streamRequests: 3, concurrency: 2,
					limit: 30, window: 10 * time.Second, seed: 7, targetGPUs: time.Hour, targetPage: time.Hour, checkEvery: 2,
					targetLatest: time.Hour, targetSeries: time.Hour, targetFleet: time.Hour},
			}
			var log bytes.Buffer
			require.NoError(t, runOn(ctx, cfg, dsn, "", &log), log.String())

			res := readResults(t, out)
			require.False(t, res.Load.Reused)
			require.Equal(t, int64(2407), res.Dataset.Rows)
			require.Equal(t, int64(100), res.Dataset.WindowRows)
			byName := map[string]result{}
			for _, r := range res.Endpoints {
				byName[r.Name] = r
			}
			require.Equal(t, 12, byName[epGPUs].Requests)
			require.Equal(t, 12, byName[epPage].Requests)
			require.Equal(t, 12, byName[epNextPage].Requests, "4 first pages x 3 followed pages")
			require.Equal(t, 12, byName[epPageGzip].Requests)
			require.Equal(t, 12, byName[epStore].Requests)
			require.Equal(t, 3, byName[epStreamAll].Requests)
			require.InDelta(t, 30, byName[epPage].AvgEntries, 0)
			require.InDelta(t, 100, byName[epStreamAll].AvgEntries, 0)
			require.Equal(t, 12, byName[epLatest].Requests)
			require.Equal(t, 12, byName[epSeries].Requests)
			require.Equal(t, 12, byName[epFleet].Requests)
			require.InDelta(t, 8, byName[epFleet].AvgEntries, 0, "every GPU in the fleet summary")
			require.True(t, res.TargetsMet)
			require.Contains(t, res.Plans.FirstPage, "telemetry_samples_")
			require.Positive(t, res.Sizes.BytesPerSample)
			require.Less(t, res.Sizes.BytesPerSample, res.Sizes.BytesPerRow, "the time-series store is smaller")

			requireSchemaLikeMigration(t, dsn)
			conn, err := pgx.Connect(ctx, dsn)
			require.NoError(t, err)
			defer conn.Close(ctx)
			var next int64
			require.NoError(t, conn.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('telemetry_legacy', 'id'))`).Scan(&next))
			require.Equal(t, int64(2408), next, "the sequence continues after the loaded ids")

			cfg.reuse, cfg.measure.requests, cfg.measure.streamRequests, cfg.explain = true, 3, 0, false
			log.Reset()
			require.NoError(t, runOn(ctx, cfg, dsn, "", &log), log.String())
			require.True(t, readResults(t, out).Load.Reused, log.String())

			cfg.rows += 80
			log.Reset()
			require.NoError(t, runOn(ctx, cfg, dsn, "", &log), log.String())
			require.False(t, readResults(t, out).Load.Reused, "a different size reloads")
			require.Contains(t, log.String(), "cannot reuse")
		})
	}
}

func readResults(t *testing.T, path string) results {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var res results
	require.NoError(t, json.Unmarshal(b, &res))
	return res
}

// requireSchemaLikeMigration checks the legacy table has migration 0001's
// indexes and constraints back after the load dropped and rebuilt them.
func requireSchemaLikeMigration(t *testing.T, dsn string) {
	t.Helper()
	const q = `SELECT indexname FROM pg_indexes WHERE tablename = 'telemetry_legacy' ORDER BY 1`
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, q)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"telemetry_legacy_gpu_uuid_timestamp_id_idx", "telemetry_legacy_pkey", "telemetry_legacy_uuid_key"}, got)
}

// TestCheckPage feeds the page check right and wrong pages, decoded in full
// and checked cheaply.
func TestCheckPage(t *testing.T) {
	t.Parallel()
	gpus, err := readTemplates(context.Background(), testCSV, 2)
	require.NoError(t, err)
	d, err := newDataset(gpus, 20*6, time.Date(2025, 7, 18, 20, 42, 34, 0, time.UTC))
	require.NoError(t, err)
	win := d.windowFor(1, 0, 3) // 3 timestamps x 10 metrics of GPU 1
	b := &bench{d: d, limit: 25}
	gpu := d.gpus[1].gpu.UUID
	page := func(n int, cursor string, edit func(k int, e *httpapi.TelemetryEntry)) []byte {
		p := httpapi.TelemetryPage{GPUID: gpu, NextCursor: cursor}
		for k := range n {
			ts, _ := d.rowAt(win, int64(k))
			e := httpapi.TelemetryEntry{Timestamp: ts, GPUUUID: gpu, MetricName: "m"}
			if edit != nil {
				edit(k, &e)
			}
			p.Entries = append(p.Entries, e)
		}
		b, err := json.Marshal(p)
		require.NoError(t, err)
		return b
	}
	tests := []struct {
		name     string
		body     []byte
		wantErr  string // "" for a good page
		fullOnly bool   // only the full check can see it
	}{
		{name: "good first page", body: page(25, "abc", nil)},
		{name: "short page", body: page(24, "abc", nil), wantErr: "24 entries"},
		{name: "missing cursor", body: page(25, "", nil), wantErr: "next_cursor"},
		{name: "wrong timestamp", fullOnly: true, wantErr: "entry 3",
			body: page(25, "abc", func(k int, e *httpapi.TelemetryEntry) {
				if k == 3 {
					e.Timestamp = e.Timestamp.Add(time.Second)
				}
			})},
		{name: "wrong gpu", fullOnly: true, wantErr: "entry 0",
			body: page(25, "abc", func(_ int, e *httpapi.TelemetryEntry) { e.GPUUUID = "GPU-other" })},
	}
	for _, tt := range tests {
		for _, full := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/full=%t", tt.name, full), func(t *testing.T) {
				t.Parallel()
				b := *b
				b.cfg.checkEvery = 1
				if !full {
					b.cfg.checkEvery = 1 << 30
				}
				cursor, n, err := b.checkPage(&worker{}, tt.body, win, 0)
				if tt.wantErr == "" || (tt.fullOnly && !full) {
					require.NoError(t, err)
					require.Equal(t, "abc", cursor)
					require.Equal(t, int64(25), n)
					return
				}
				require.ErrorContains(t, err, tt.wantErr)
			})
		}
	}
}
