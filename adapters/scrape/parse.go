package scrape

import (
	"bytes"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gpufleet/telemetry/domain"
)

// MetricPrefix marks the series that become telemetry: every DCGM field.
const MetricPrefix = "DCGM_"

// acceptHeader asks for the Prometheus text format first (what dcgm-exporter
// serves, and the cheapest to parse) and takes OpenMetrics 1.0 or anything
// else in text form after it.
const acceptHeader = `text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1`

// The labels dcgm-exporter puts on every series, read into the point's
// fields; the alternatives are spellings seen in other exporters' dumps.
var (
	labelUUID      = []string{"UUID", "uuid", "gpu_uuid"}
	labelGPU       = []string{"gpu", "gpu_id", "gpu_index"}
	labelDevice    = []string{"device"}
	labelModel     = []string{"modelName", "model_name"}
	labelHostname  = []string{"Hostname", "hostname"}
	labelContainer = []string{"container"}
	labelPod       = []string{"pod"}
	labelNamespace = []string{"namespace"}
)

// result is what one scrape's body yields.
type result struct {
	points  []domain.Point
	ignored int            // non-DCGM series
	skipped map[string]int // DCGM series (or lines) skipped, by reason
}

func (r *result) skip(reason string) {
	if r.skipped == nil {
		r.skipped = map[string]int{}
	}
	r.skipped[reason]++
}

// isOpenMetrics reports whether a Content-Type names OpenMetrics.
func isOpenMetrics(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/openmetrics-text"
}

// parseBody turns an exposition body into points. The whole body goes
// through expfmt's text parser at once; when that fails (one bad line makes
// it refuse everything), each sample line is parsed alone, so one bad line
// costs one series, counted, rather than the whole target. instance is the
// target's host:port, added to labels_raw as Prometheus adds it.
func parseBody(body []byte, contentType, instance string, scraped time.Time) result {
	if isOpenMetrics(contentType) {
		body = openMetricsToText(body)
	}
	var res result
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err == nil {
		names := make([]string, 0, len(fams))
		for name := range fams {
			names = append(names, name)
		}
		slices.Sort(names) // a stable order: the same body yields the same sequence
		for _, name := range names {
			res.family(fams[name], instance, scraped)
		}
		return res
	}
	for line := range bytes.Lines(body) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(append(line, '\n')))
		if err != nil {
			if bytes.HasPrefix(line, []byte(MetricPrefix)) {
				res.skip(SkipParse)
			} else {
				res.ignored++
			}
			continue
		}
		for _, f := range fams {
			res.family(f, instance, scraped)
		}
	}
	return res
}

func (r *result) family(f *dto.MetricFamily, instance string, scraped time.Time) {
	name := f.GetName()
	if !strings.HasPrefix(name, MetricPrefix) {
		r.ignored += len(f.GetMetric())
		return
	}
	for _, m := range f.GetMetric() {
		var v float64
		switch {
		case m.GetGauge() != nil:
			v = m.GetGauge().GetValue()
		case m.GetCounter() != nil:
			v = m.GetCounter().GetValue()
		case m.GetUntyped() != nil:
			v = m.GetUntyped().GetValue()
		default:
			r.skip(SkipUnsupportedType)
			continue
		}
		labels := m.GetLabel()
		pt := domain.Point{MetricName: name, Value: domain.CleanValue(v), Timestamp: scraped}
		if pt.GPUUUID = strings.TrimSpace(label(labels, labelUUID)); pt.GPUUUID == "" {
			r.skip(SkipMissingUUID)
			continue
		}
		idx, err := strconv.Atoi(strings.TrimSpace(label(labels, labelGPU)))
		if err != nil || idx < 0 {
			r.skip(SkipBadGPUIndex)
			continue
		}
		pt.GPUIndex = idx
		pt.Device = label(labels, labelDevice)
		pt.ModelName = label(labels, labelModel)
		pt.Hostname = label(labels, labelHostname)
		pt.Container = label(labels, labelContainer)
		pt.Pod = label(labels, labelPod)
		pt.Namespace = label(labels, labelNamespace)
		pt.LabelsRaw = labelsRaw(name, instance, labels)
		if m.TimestampMs != nil {
			pt.Timestamp = time.UnixMilli(m.GetTimestampMs()).UTC()
		}
		r.points = append(r.points, pt)
	}
}

// label returns the value of the first of names present.
func label(labels []*dto.LabelPair, names []string) string {
	for _, n := range names {
		for _, l := range labels {
			if l.GetName() == n {
				return l.GetValue()
			}
		}
	}
	return ""
}

// labelsRaw renders the labels as the CSV dumps hold them (Prometheus'
// series notation without braces): name="value" pairs sorted by name, with
// __name__ and, unless the exporter set its own, instance.
func labelsRaw(name, instance string, labels []*dto.LabelPair) string {
	pairs := make([][2]string, 0, len(labels)+2)
	hasInstance := false
	for _, l := range labels {
		if l.GetName() == "instance" {
			hasInstance = true
		}
		pairs = append(pairs, [2]string{l.GetName(), l.GetValue()})
	}
	pairs = append(pairs, [2]string{"__name__", name})
	if !hasInstance && instance != "" {
		pairs = append(pairs, [2]string{"instance", instance})
	}
	slices.SortFunc(pairs, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return domain.FormatLabels(pairs)
}

// openMetricsToText rewrites an OpenMetrics 1.0 body into the Prometheus
// text format expfmt's text parser reads: it stops at "# EOF", drops "# UNIT"
// lines, maps the types the text format lacks to untyped, drops exemplars
// and turns timestamps from seconds into milliseconds. Anything else passes
// through unchanged (a line it cannot read is left for the parser to refuse,
// and counted then).
func openMetricsToText(body []byte) []byte {
	out := make([]byte, 0, len(body))
	for line := range bytes.Lines(body) {
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.Equal(trimmed, []byte("# EOF")):
			return out
		case bytes.HasPrefix(trimmed, []byte("# UNIT ")):
			continue
		case bytes.HasPrefix(trimmed, []byte("# TYPE ")):
			f := strings.Fields(string(trimmed))
			if len(f) == 4 {
				switch f[3] {
				case "unknown", "info", "stateset":
					out = append(out, "# TYPE "+f[2]+" untyped\n"...)
					continue
				}
			}
		case len(trimmed) > 0 && trimmed[0] != '#':
			out = append(out, omSample(trimmed)...)
			out = append(out, '\n')
			continue
		}
		out = append(out, trimmed...)
		out = append(out, '\n')
	}
	return out
}

// omSample rewrites one OpenMetrics sample line: series, value, optional
// timestamp in seconds, optional " # exemplar".
func omSample(line []byte) []byte {
	end := seriesEnd(line)
	if end < 0 {
		return line
	}
	rest := strings.Fields(string(line[end:]))
	if len(rest) == 0 {
		return line
	}
	out := append(slices.Clip(line[:end]), ' ')
	out = append(out, rest[0]...)
	if len(rest) > 1 && rest[1] != "#" {
		sec, err := strconv.ParseFloat(rest[1], 64)
		if err != nil {
			return line
		}
		out = append(out, ' ')
		out = strconv.AppendInt(out, int64(sec*1000), 10)
	}
	return out
}

// seriesEnd returns the index just past a sample line's name and labels,
// skipping quoted label values (which may hold spaces, braces and '#'), or
// -1 when the braces do not close.
func seriesEnd(line []byte) int {
	i := bytes.IndexAny(line, "{ \t")
	if i < 0 || line[i] != '{' {
		return i
	}
	inQuote := false
	for j := i + 1; j < len(line); j++ {
		switch c := line[j]; {
		case inQuote && c == '\\':
			j++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return j + 1
		}
	}
	return -1
}
