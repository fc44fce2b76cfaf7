package csv

import (
	"context"
	stdcsv "encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/telemetry/domain"
	"github.com/gpufleet/telemetry/internal/promx"
	"github.com/gpufleet/telemetry/ports"
)

// DefaultPath is the DCGM dump shipped with the project (2,470 rows, 247
// GPUs), relative to the repository root: the streamer's default
// STREAMER_CSV_PATH and the fake exporter's FAKE_DCGM_CSV_PATH.
const DefaultPath = "deployments/data/dcgm_metrics_20250718_134233.csv"

// MaxFileSize is the largest input a Source accepts by default. The whole
// file is held in memory as points, roughly one to two times its size.
const MaxFileSize int64 = 256 << 20

// maxLoggedSkips bounds the per-row warnings of one load; the rest of the bad
// rows are still counted and reported in the summary line, so a file that is
// wrong throughout cannot flood the logs.
const maxLoggedSkips = 100

// ErrNoRows is returned when a looping source has no valid row to loop over.
var ErrNoRows = errors.New("no valid rows")

// Reasons a row is skipped: the values of the reason label of
// streamer_csv_rows_skipped_total.
const (
	ReasonFieldCount  = "field_count"
	ReasonMalformed   = "malformed_csv"
	ReasonBadGPUIndex = "bad_gpu_id"
	ReasonBadValue    = "bad_value"
	ReasonEmptyUUID   = "empty_uuid"
	ReasonEmptyMetric = "empty_metric_name"
)

var skipReasons = []string{ReasonFieldCount, ReasonMalformed, ReasonBadGPUIndex, ReasonBadValue, ReasonEmptyUUID, ReasonEmptyMetric}

// Options tunes a Source. The zero value loops forever on the real clock,
// logs to slog.Default() and registers no metrics.
type Options struct {
	// Once makes Next return io.EOF after one pass instead of starting over.
	Once bool
	// Now is the clock that stamps points; nil means time.Now. The result is
	// converted to UTC.
	Now func() time.Time
	// Logger receives one warning per skipped row (the first
	// maxLoggedSkips of them) and a summary; nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets streamer_csv_rows_skipped_total. Sources
	// sharing a Registerer share the counter.
	Registerer prometheus.Registerer
	// MaxBytes caps the input size; zero or less means MaxFileSize.
	MaxBytes int64
}

// Source is a ports.Source over the rows of one DCGM CSV file, parsed once.
type Source struct {
	name    string
	once    bool
	now     func() time.Time
	rows    []domain.Point // immutable after construction; Timestamp unset
	skipped int            // immutable after construction

	// next is the index, counted across passes, of the row the next call
	// hands out; shared by concurrent Next calls, hence atomic.
	next atomic.Uint64
}

var _ ports.Source = (*Source)(nil)

// New opens and parses the CSV file at path. When path is a directory, it
// reads every *.csv in it in name order, each with its own header, as one
// source: Kubernetes ConfigMaps are capped at 1 MiB, so the Helm chart ships
// the DCGM dump split into parts. It fails when a file cannot be read, the
// input is larger than the size limit, a file lacks a required column, or
// (when looping) there is no valid row.
func New(path string, opts Options) (*Source, error) {
	paths, err := csvFiles(path)
	if err != nil {
		return nil, fmt.Errorf("csv source %s: %w", path, err)
	}
	inputs := make([]input, 0, len(paths))
	var total int64
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("csv source %s: %w", p, err)
		}
		defer func() { _ = f.Close() }()
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		if total > opts.maxBytes() {
			what := "file is"
			if len(paths) > 1 {
				what = "files total at least"
			}
			return nil, fmt.Errorf("csv source %s: %s %d bytes, over the %d byte limit", path, what, total, opts.maxBytes())
		}
		inputs = append(inputs, input{name: p, r: f})
	}
	return newFromInputs(path, inputs, opts)
}

// csvFiles returns path itself, or the *.csv files of the directory path in
// name order.
func csvFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	paths, err := filepath.Glob(filepath.Join(path, "*.csv"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, errors.New("directory holds no *.csv file")
	}
	sort.Strings(paths)
	return paths, nil
}

type input struct {
	name string
	r    io.Reader
}

// NewFromReader parses CSV from r; name identifies it in errors, logs and
// metrics. It reads r to the end (or to the size limit) and does not close it.
func NewFromReader(name string, r io.Reader, opts Options) (*Source, error) {
	return newFromInputs(name, []input{{name: name, r: r}}, opts)
}

func newFromInputs(name string, inputs []input, opts Options) (*Source, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	skips, err := skippedCounter(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("csv source %s: %w", name, err)
	}
	p := parser{logger: logger, skips: skips, intern: map[string]string{}}
	var rows []domain.Point
	for _, in := range inputs {
		p.name = in.name
		part, err := p.parse(in.r, opts.maxBytes())
		if err != nil {
			return nil, fmt.Errorf("csv source %s: %w", in.name, err)
		}
		rows = append(rows, part...)
	}
	if len(rows) == 0 && !opts.Once {
		return nil, fmt.Errorf("csv source %s: %w to loop over (%d skipped)", name, ErrNoRows, p.skipped)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	logger.Info("csv source loaded", "source", name, "files", len(inputs), "rows", len(rows), "skipped", p.skipped, "loop", !opts.Once)
	return &Source{name: name, once: opts.Once, now: now, rows: rows, skipped: p.skipped}, nil
}

func (o Options) maxBytes() int64 {
	if o.MaxBytes <= 0 {
		return MaxFileSize
	}
	return o.MaxBytes
}

// Next returns the next valid row, stamped with the clock's current time in
// UTC. A looping source starts over at the end of the file; a Once source
// returns io.EOF from then on. It returns ctx.Err() when ctx is done. Next
// never blocks.
func (s *Source) Next(ctx context.Context) (domain.Point, error) {
	if err := ctx.Err(); err != nil {
		return domain.Point{}, err
	}
	n := uint64(len(s.rows))
	if n == 0 {
		if s.once {
			return domain.Point{}, io.EOF
		}
		return domain.Point{}, fmt.Errorf("csv source %s: %w", s.name, ErrNoRows)
	}
	i := s.next.Add(1) - 1
	if s.once && i >= n {
		return domain.Point{}, io.EOF
	}
	p := s.rows[i%n]
	if p.Value != nil {
		// A copy, so a caller writing through the pointer cannot change the
		// row for the next pass.
		v := *p.Value
		p.Value = &v
	}
	p.Timestamp = s.now().UTC()
	return p, nil
}

// Rows is the number of valid rows in one pass.
func (s *Source) Rows() int { return len(s.rows) }

// Skipped is the number of rows skipped when the file was loaded.
func (s *Source) Skipped() int { return s.skipped }

// skippedCounter returns the skipped-rows counter, registered with reg when
// reg is not nil; a counter already registered there is reused.
func skippedCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c, err := promx.Reuse(reg, promx.CounterVec("streamer_csv_rows_skipped_total",
		"CSV rows skipped because they could not be parsed, by reason.", "reason"))
	if err != nil {
		return nil, err
	}
	promx.Zero(c, skipReasons...) // every reason at 0 so rate() works from the start
	return c, nil
}

// parser holds the state of one parse; it lives only inside NewFromReader.
type parser struct {
	name    string
	logger  *slog.Logger
	skips   *prometheus.CounterVec
	skipped int
	bySkip  map[string]int
	intern  map[string]string
}

func (p *parser) parse(r io.Reader, limit int64) ([]domain.Point, error) {
	lr := &io.LimitedReader{R: r, N: limit + 1}
	cr := stdcsv.NewReader(lr)
	cr.FieldsPerRecord = -1 // field counts are checked per row, so a bad row is skipped, not fatal
	cr.ReuseRecord = true

	header, err := cr.Read()
	switch {
	case errors.Is(err, io.EOF):
		return nil, errors.New("empty input: no header row")
	case err != nil:
		return nil, fmt.Errorf("read header: %w", err)
	}
	cols, err := mapHeader(header)
	if err != nil {
		return nil, err
	}
	width := len(header)

	var rows []domain.Point
	p.bySkip = map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if lr.N <= 0 {
			return nil, fmt.Errorf("input is over the %d byte limit", limit)
		}
		var perr *stdcsv.ParseError
		if errors.As(err, &perr) {
			p.skip(perr.StartLine, ReasonMalformed, perr.Err.Error())
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != width {
			p.skip(line, ReasonFieldCount, fmt.Sprintf("%d fields, header has %d", len(rec), width))
			continue
		}
		pt, reason, detail := p.point(cols, rec)
		if reason != "" {
			p.skip(line, reason, detail)
			continue
		}
		rows = append(rows, pt)
	}
	if lr.N <= 0 {
		return nil, fmt.Errorf("input is over the %d byte limit", limit)
	}
	if p.skipped > 0 {
		args := []any{"source", p.name, "skipped", p.skipped}
		for _, r := range skipReasons {
			if n := p.bySkip[r]; n > 0 {
				args = append(args, r, n)
			}
		}
		p.logger.Warn("csv rows skipped", args...)
	}
	return rows, nil
}

// point builds a point from a row, or says why the row is unusable.
func (p *parser) point(cols columnIndex, rec []string) (pt domain.Point, reason, detail string) {
	field := func(c int) string {
		if cols[c] < 0 {
			return ""
		}
		return rec[cols[c]]
	}
	pt.MetricName = p.str(strings.TrimSpace(field(colMetric)))
	if pt.MetricName == "" {
		return pt, ReasonEmptyMetric, "metric_name is empty"
	}
	pt.GPUUUID = p.str(strings.TrimSpace(field(colUUID)))
	if pt.GPUUUID == "" {
		return pt, ReasonEmptyUUID, "uuid is empty"
	}
	idx, err := strconv.Atoi(strings.TrimSpace(field(colGPUIndex)))
	if err != nil || idx < 0 {
		return pt, ReasonBadGPUIndex, fmt.Sprintf("gpu_id %q is not a GPU index", field(colGPUIndex))
	}
	pt.GPUIndex = idx
	if v := strings.TrimSpace(field(colValue)); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return pt, ReasonBadValue, fmt.Sprintf("value %q is not a number", v)
		}
		pt.Value = domain.CleanValue(f)
	}
	pt.Device = p.str(field(colDevice))
	pt.ModelName = p.str(field(colModel))
	pt.Hostname = p.str(field(colHostname))
	pt.Container = p.str(field(colContainer))
	pt.Pod = p.str(field(colPod))
	pt.Namespace = p.str(field(colNamespace))
	pt.LabelsRaw = field(colLabels)
	return pt, "", ""
}

// str interns the low-cardinality fields: a dump repeats a few hostnames,
// models and metric names thousands of times.
func (p *parser) str(s string) string {
	if v, ok := p.intern[s]; ok {
		return v
	}
	p.intern[s] = s
	return s
}

func (p *parser) skip(line int, reason, detail string) {
	p.skipped++
	p.bySkip[reason]++
	p.skips.WithLabelValues(reason).Inc()
	if p.skipped <= maxLoggedSkips {
		p.logger.Warn("csv row skipped", "source", p.name, "line", line, "reason", reason, "detail", detail)
	}
}
