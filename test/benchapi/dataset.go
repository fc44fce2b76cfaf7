package main

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/gpufleet/telemetry/adapters/csv"
	"github.com/gpufleet/telemetry/domain"
)

// gpuTemplate is one GPU of the shipped DCGM dump: its registry attributes
// and one sample per metric, which generated rows copy (labels, device,
// model) and vary (value).
type gpuTemplate struct {
	gpu     domain.GPU
	samples []domain.Point // one per metric, in file order
}

// slot is one row of a timestamp: which GPU, which of its samples.
type slot struct{ gpu, sample int }

// dataset describes the generated table without holding it: row g (0-based)
// is sample slots[g%perTS] at timestamp oldest + g/perTS seconds, with id
// g+1 and message UUID msgUUID(g). Everything is derived from g, so load
// workers generate disjoint ranges independently and a reused table can be
// described again without reading it.
type dataset struct {
	gpus       []gpuTemplate
	slots      []slot
	slotStart  []int64 // index in slots of each GPU's first sample
	rows       int64
	timestamps int64     // ceil(rows / perTS); only the last one may be partial
	oldest     time.Time // timestamp of row 0, whole seconds, UTC
}

// readTemplates parses the DCGM CSV with the project's source adapter and
// returns the first n GPUs ordered by hostname, GPU index and UUID, so that
// a smaller -gpus keeps whole hosts.
func readTemplates(ctx context.Context, path string, n int) ([]gpuTemplate, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	src, err := csv.New(path, csv.Options{Once: true, Logger: quiet})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	byUUID := map[string]*gpuTemplate{}
	for {
		p, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		t, ok := byUUID[p.GPUUUID]
		if !ok {
			t = &gpuTemplate{gpu: domain.GPUOf(p)}
			byUUID[p.GPUUUID] = t
		}
		if !slices.ContainsFunc(t.samples, func(s domain.Point) bool { return s.MetricName == p.MetricName }) {
			t.samples = append(t.samples, p)
		}
	}
	all := make([]gpuTemplate, 0, len(byUUID))
	for _, t := range byUUID {
		all = append(all, *t)
	}
	slices.SortFunc(all, func(a, b gpuTemplate) int {
		return cmp.Or(cmp.Compare(a.gpu.Hostname, b.gpu.Hostname), cmp.Compare(a.gpu.GPUIndex, b.gpu.GPUIndex),
			cmp.Compare(a.gpu.UUID, b.gpu.UUID))
	})
	if n < 1 || n > len(all) {
		return nil, fmt.Errorf("-gpus %d: %s holds %d GPUs, want 1 to %d", n, path, len(all), len(all))
	}
	return all[:n], nil
}

// newDataset lays out rows rows over the templates, ending at newest.
func newDataset(gpus []gpuTemplate, rows int64, newest time.Time) (*dataset, error) {
	d := &dataset{gpus: gpus, rows: rows}
	for gi, g := range gpus {
		d.slotStart = append(d.slotStart, int64(len(d.slots)))
		for si := range g.samples {
			d.slots = append(d.slots, slot{gpu: gi, sample: si})
		}
	}
	perTS := int64(len(d.slots))
	if rows < 2*perTS {
		return nil, fmt.Errorf("-rows %d: want at least %d (two timestamps of %d GPUs) to have a full window", rows, 2*perTS, len(gpus))
	}
	d.timestamps = (rows + perTS - 1) / perTS
	d.oldest = newest.UTC().Truncate(time.Second).Add(-time.Duration(d.timestamps-1) * time.Second)
	return d, nil
}

// perTS is the number of rows per timestamp.
func (d *dataset) perTS() int64 { return int64(len(d.slots)) }

// newest is the timestamp of the last row.
func (d *dataset) newest() time.Time { return d.at(d.timestamps - 1) }

// at is the timestamp with index ts.
func (d *dataset) at(ts int64) time.Time { return d.oldest.Add(time.Duration(ts) * time.Second) }

// lastSeen is the timestamp of GPU gi's newest row: the last timestamp
// unless the partial last timestamp stops before the GPU's first slot.
func (d *dataset) lastSeen(gi int) time.Time {
	inLast := d.rows - (d.timestamps-1)*d.perTS() // rows of the last timestamp, 1..perTS
	if d.slotStart[gi] < inLast {
		return d.newest()
	}
	return d.at(d.timestamps - 2)
}

// copyColumns are the telemetry columns the load writes, in row order. The
// id is set explicitly (and the sequence moved past it afterwards): COPY
// then never calls nextval.
var copyColumns = []string{"id", "uuid", "gpu_uuid", "gpu_index", "device", "hostname", "model_name", "metric_name",
	"timestamp", "container", "pod", "namespace", "value", "labels_raw", "ingested_at"}

// fill writes row g into row (len(copyColumns) values).
func (d *dataset) fill(row []any, g int64) {
	s := d.slots[g%d.perTS()]
	t := d.gpus[s.gpu]
	p := t.samples[s.sample]
	ts := d.at(g / d.perTS())
	var value *float64
	if p.Value != nil {
		v := vary(*p.Value, g)
		value = &v
	}
	row[0], row[1], row[2], row[3], row[4] = g+1, msgUUID(g), t.gpu.UUID, int32(t.gpu.GPUIndex), t.gpu.Device
	row[5], row[6], row[7], row[8], row[9] = t.gpu.Hostname, t.gpu.ModelName, p.MetricName, ts, p.Container
	row[10], row[11], row[12], row[13], row[14] = p.Pod, p.Namespace, value, p.LabelsRaw, ts.Add(time.Second)
}

// window is a query window of whole timestamps [first, last] of one GPU.
type window struct {
	gpu         int
	first, last int64 // timestamp indexes, inclusive
}

// windowFor returns the window of span seconds starting at timestamp first
// of GPU gi, clamped to the full timestamps (the partial last one is never
// included, so every GPU has every metric at each timestamp of a window).
func (d *dataset) windowFor(gi int, first, span int64) window {
	full := d.timestamps - 1
	span = min(span, full)
	first = min(max(first, 0), full-span)
	return window{gpu: gi, first: first, last: first + span - 1}
}

// maxWindowStart is the largest first timestamp of a span-second window.
func (d *dataset) maxWindowStart(span int64) int64 { return max(d.timestamps-1-span, 0) }

// windowRows is how many rows a window holds.
func (d *dataset) windowRows(w window) int64 {
	return (w.last - w.first + 1) * int64(len(d.gpus[w.gpu].samples))
}

// msgUUID is row g's message UUID: random-looking like the UUIDv4 mqwriter
// assigns (so the unique index sees the same scattered inserts), yet unique
// by construction because bytes 9-15 carry g.
func msgUUID(g int64) uuid.UUID {
	var u uuid.UUID
	binary.BigEndian.PutUint64(u[0:8], splitmix64(uint64(g)))
	binary.BigEndian.PutUint64(u[8:16], uint64(g)&(1<<56-1))
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = 0x80             // RFC 4122 variant; g < 2^56 leaves the byte free
	return u
}

// vary moves a sample's value by up to 2% (at least ±1), deterministically
// per row, keeping non-negative metrics non-negative.
func vary(base float64, g int64) float64 {
	u := float64(splitmix64(uint64(g)^0x9e3779b97f4a7c15)>>11)/(1<<53)*2 - 1 // [-1, 1)
	v := base + u*max(1, 0.02*math.Abs(base))
	if base >= 0 && v < 0 {
		v = 0
	}
	return math.Round(v*100) / 100
}

// splitmix64 is a fast bijective mixer (Steele, Lea, Flood 2014).
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// rowAt is the timestamp and id of row k (0-based) of window w in the
// API's (timestamp, id) order: a GPU's samples of one timestamp are
// consecutive slots, so their ids follow sample order.
func (d *dataset) rowAt(w window, k int64) (time.Time, int64) {
	m := int64(len(d.gpus[w.gpu].samples))
	ts := w.first + k/m
	return d.at(ts), ts*d.perTS() + d.slotStart[w.gpu] + k%m + 1
}
