// Package sourcetest is the contract suite every ports.Source adapter runs:
// each Next returns a valid point stamped with a fresh UTC time, a done
// context ends Next with its error, one pass (a file, a scrape round) yields
// every fixture record, and an unparsable record is skipped rather than
// returned as an error. The fixture is DCGM CSV records; each adapter's
// harness serves them its own way (a CSV file, fake dcgm-exporters).
// Capabilities lists the allowed differences between a replaying source and
// a live one. An adapter's TestConformance calls Run; every subtest builds
// its own source and runs in parallel.
package sourcetest

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/ports"
)

// NewSource builds a fresh source over records (fields in Header order; the
// suite's unparsable records may have another length), stamping points with
// the real clock. It may loop or stop with io.EOF after one pass. It
// registers its own cleanup.
type NewSource func(t testing.TB, records [][]string) ports.Source

// Capabilities are the differences between sources the suite allows.
type Capabilities struct {
	// Replay: the source replays stored records (the CSV): labels_raw is
	// passed through verbatim, and each point is stamped with the time Next
	// hands it out. A live source (scrape) rebuilds labels_raw from the
	// exporter's labels and stamps the time of the scrape, which precedes
	// the Next call that returns the point.
	Replay bool
}

// CSVFile is a NewSource harness's helper for file-based sources: it writes
// records under Header to a fresh file and returns its path.
func CSVFile(t testing.TB, records [][]string) string {
	t.Helper()
	return WriteCSV(t, Header, records...)
}

// Header is the DCGM exporter's CSV header, as the fixtures use it.
var Header = []string{"timestamp", "metric_name", "gpu_id", "device", "uuid", "modelName",
	"Hostname", "container", "pod", "namespace", "value", "labels_raw"}

// Row is one fixture row and the point a source must make of it.
type Row struct {
	Fields []string // in Header order
	Want   domain.Point
}

// fixtureTime is the CSV's own timestamp, far from now so that a source
// passing it through instead of stamping the current time is caught.
const fixtureTime = "2001-02-03T04:05:06Z"

func row(metric, index, uuid, host, value string, want *float64) Row {
	labels := fmt.Sprintf(`Hostname="%s",UUID="%s",__name__="%s",gpu="%s"`, host, uuid, metric, index)
	idx := 0
	_, _ = fmt.Sscan(index, &idx)
	return Row{
		Fields: []string{fixtureTime, metric, index, "nvidia" + index, uuid, "NVIDIA H100 80GB HBM3",
			host, "", "", "", value, labels},
		Want: domain.Point{MetricName: metric, GPUIndex: idx, Device: "nvidia" + index, GPUUUID: uuid,
			ModelName: "NVIDIA H100 80GB HBM3", Hostname: host, Value: want, LabelsRaw: labels},
	}
}

func f64(v float64) *float64 { return &v }

// Fixture is the small file every test reads: three GPUs on two hosts,
// several metrics, an empty value and a DCGM blank sentinel (both nil).
var Fixture = []Row{
	row("DCGM_FI_DEV_GPU_UTIL", "0", "GPU-5fd4f087-86f3-7a43-b711-4771313afc50", "host-a", "0", f64(0)),
	row("DCGM_FI_DEV_GPU_UTIL", "1", "GPU-bc7a12ab-4998-fdc5-0785-2678a929a142", "host-a", "100", f64(100)),
	row("DCGM_FI_DEV_POWER_USAGE", "0", "GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "host-b", "312.25", f64(312.25)),
	row("DCGM_FI_DEV_FB_USED", "1", "GPU-bc7a12ab-4998-fdc5-0785-2678a929a142", "host-a", "", nil),
	row("DCGM_FI_DEV_ENC_UTIL", "0", "GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "host-b", "4294967295", nil),
	row("DCGM_FI_DEV_SM_CLOCK", "0", "GPU-5fd4f087-86f3-7a43-b711-4771313afc50", "host-a", "1980", f64(1980)),
}

// WriteCSV writes header and records as a CSV file in a fresh temporary
// directory of t and returns its path.
func WriteCSV(t testing.TB, header []string, records ...[]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dcgm.csv")
	f, err := os.Create(path)
	require.NoError(t, err)
	w := csv.NewWriter(f)
	require.NoError(t, w.Write(header))
	require.NoError(t, w.WriteAll(records))
	require.NoError(t, f.Close())
	return path
}

func fields(rows []Row) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[i] = r.Fields
	}
	return out
}

// Run runs the source contract suite against sources built by newSource.
func Run(t *testing.T, newSource NewSource, caps Capabilities) {
	t.Run("YieldsEveryRow", func(t *testing.T) {
		t.Parallel()
		src := newSource(t, fields(Fixture))
		got := make([]domain.Point, 0, len(Fixture))
		for range Fixture {
			p, err := src.Next(t.Context())
			require.NoError(t, err)
			p.Timestamp = time.Time{}
			got = append(got, caps.comparable(t, p))
		}
		require.ElementsMatch(t, wantPoints(Fixture, caps), got)

		// After one pass a source either ends or starts over.
		p, err := src.Next(t.Context())
		if errors.Is(err, io.EOF) {
			_, err = src.Next(t.Context())
			require.ErrorIs(t, err, io.EOF, "a finished source stays finished")
			return
		}
		require.NoError(t, err)
		p.Timestamp = time.Time{}
		require.Contains(t, wantPoints(Fixture, caps), caps.comparable(t, p), "a looping source repeats the fixture's records")
	})

	t.Run("ValidPointWithFreshUTCTimestamp", func(t *testing.T) {
		t.Parallel()
		created := time.Now().Round(0) // wall clock only: stamps carry no monotonic reading
		src := newSource(t, fields(Fixture))
		for i := range Fixture {
			before := time.Now().Round(0)
			if !caps.Replay {
				before = created // stamped at the scrape, which may precede this call
			}
			p, err := src.Next(t.Context())
			after := time.Now().Round(0)
			require.NoError(t, err)
			require.NoError(t, p.Validate(), "point %d", i)
			require.Equal(t, time.UTC, p.Timestamp.Location(), "point %d", i)
			require.False(t, p.Timestamp.Before(before) || p.Timestamp.After(after),
				"point %d stamped %s, want the time it was read [%s, %s], not the fixture's", i, p.Timestamp, before, after)
		}
	})

	t.Run("HonoursContext", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			ctx  func(t *testing.T) context.Context
			want error
		}{
			{name: "canceled", want: context.Canceled, ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return ctx
			}},
			{name: "deadline", want: context.DeadlineExceeded, ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithDeadline(t.Context(), time.Unix(0, 0))
				t.Cleanup(cancel)
				return ctx
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				src := newSource(t, fields(Fixture))
				_, err := src.Next(tt.ctx(t))
				require.ErrorIs(t, err, tt.want)

				// The source still works for a live context.
				_, err = src.Next(t.Context())
				require.NoError(t, err)
			})
		}
	})

	t.Run("SkipsUnparsableRows", func(t *testing.T) {
		t.Parallel()
		bad := [][]string{
			{fixtureTime, "DCGM_FI_DEV_GPU_UTIL", "0", "nvidia0", "GPU-x", "m", "h", "", "", "", "not-a-number", ""},
			{fixtureTime, "DCGM_FI_DEV_GPU_UTIL", "zero", "nvidia0", "GPU-x", "m", "h", "", "", "", "1", ""},
			{fixtureTime, "DCGM_FI_DEV_GPU_UTIL", "0", "nvidia0", "", "m", "h", "", "", "", "1", ""},
			{fixtureTime, "DCGM_FI_DEV_GPU_UTIL", "0"},
		}
		records := [][]string{Fixture[0].Fields, bad[0], bad[1], Fixture[1].Fields, bad[2], bad[3], Fixture[2].Fields}
		src := newSource(t, records)
		got := make([]domain.Point, 0, 3)
		for range 3 {
			p, err := src.Next(t.Context())
			require.NoError(t, err, "bad rows are skipped, not returned as errors")
			p.Timestamp = time.Time{}
			got = append(got, caps.comparable(t, p))
		}
		require.ElementsMatch(t, wantPoints(Fixture[:3], caps), got)
	})
}

// comparable returns p as the suite compares it: a live source's rebuilt
// labels_raw is checked to name the series and the GPU, then left out.
func (c Capabilities) comparable(t testing.TB, p domain.Point) domain.Point {
	t.Helper()
	if c.Replay {
		return p
	}
	require.Contains(t, p.LabelsRaw, fmt.Sprintf(`__name__="%s"`, p.MetricName))
	require.Contains(t, p.LabelsRaw, fmt.Sprintf(`UUID="%s"`, p.GPUUUID))
	p.LabelsRaw = ""
	return p
}

func wantPoints(rows []Row, caps Capabilities) []domain.Point {
	out := make([]domain.Point, len(rows))
	for i, r := range rows {
		out[i] = r.Want
		if !caps.Replay {
			out[i].LabelsRaw = ""
		}
	}
	return out
}
