package monitoring_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/gpufleet/telemetry/test/stack"
)

func repoPath(t *testing.T, elem ...string) string {
	t.Helper()
	root, err := stack.Root()
	require.NoError(t, err)
	return filepath.Join(append([]string{root}, elem...)...)
}

// dashboardFiles returns every dashboard's raw JSON by file name.
func dashboardFiles(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(repoPath(t, "deployments", "grafana", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		out[filepath.Base(p)] = b
	}
	return out
}

// rawDashboard is the part of a dashboard's JSON the query checks walk,
// read loosely: the schema checks are TestDashboardsDecodeAgainstGrafanaSchema's.
type rawDashboard struct {
	Templating struct {
		List []rawVariable `json:"list"`
	} `json:"templating"`
	Panels []rawPanel `json:"panels"`
}

type rawVariable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *datasourceRef  `json:"datasource"`
}

type rawPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *datasourceRef   `json:"datasource"`
	Targets    []map[string]any `json:"targets"`
	Panels     []rawPanel       `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

const (
	promType     = "prometheus"
	postgresType = "grafana-postgresql-datasource"
)

func decodeRaw(t *testing.T, name string, b []byte) rawDashboard {
	t.Helper()
	var d rawDashboard
	require.NoError(t, json.Unmarshal(b, &d), name)
	return d
}

// allPanels flattens rows' nested panels.
func allPanels(ps []rawPanel) []rawPanel {
	var out []rawPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// query is one expression with where it comes from, for failure messages.
type query struct {
	where string
	text  string
}

// dashboardQueries returns the dashboards' queries of one data source type:
// panel targets and query variables.
func dashboardQueries(t *testing.T, dsType string) []query {
	t.Helper()
	var out []query
	for name, b := range dashboardFiles(t) {
		d := decodeRaw(t, name, b)
		for _, v := range d.Templating.List {
			if v.Type != "query" || v.Datasource == nil || v.Datasource.Type != dsType {
				continue
			}
			var text string
			if err := json.Unmarshal(v.Query, &text); err != nil {
				var obj struct {
					Query string `json:"query"`
				}
				require.NoError(t, json.Unmarshal(v.Query, &obj), "%s: variable %s: query", name, v.Name)
				text = obj.Query
			}
			require.NotEmpty(t, text, "%s: variable %s has no query", name, v.Name)
			require.Equal(t, text, v.Definition, "%s: variable %s: definition differs from the query", name, v.Name)
			out = append(out, query{where: fmt.Sprintf("%s variable %s", name, v.Name), text: text})
		}
		for _, p := range allPanels(d.Panels) {
			for _, tg := range p.Targets {
				ds := p.Datasource
				if b, err := json.Marshal(tg["datasource"]); err == nil && tg["datasource"] != nil {
					ds = new(datasourceRef)
					require.NoError(t, json.Unmarshal(b, ds))
				}
				require.NotNil(t, ds, "%s: panel %q: a target without a data source", name, p.Title)
				if ds.Type != dsType {
					continue
				}
				key := map[string]string{promType: "expr", postgresType: "rawSql"}[dsType]
				text, _ := tg[key].(string)
				require.NotEmpty(t, text, "%s: panel %q target %v: no %s", name, p.Title, tg["refId"], key)
				out = append(out, query{where: fmt.Sprintf("%s panel %d %q target %v", name, p.ID, p.Title, tg["refId"]), text: text})
			}
		}
	}
	require.NotEmpty(t, out, "no %s queries in the dashboards", dsType)
	return out
}

// rulesFile is deployments/prometheus/alerts.yaml.
type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// loadRules decodes the rules file strictly (an unknown or misplaced key fails).
func loadRules(t *testing.T) rulesFile {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, "deployments", "prometheus", "alerts.yaml"))
	require.NoError(t, err)
	var f rulesFile
	require.NoError(t, sigsyaml.UnmarshalStrict(b, &f))
	require.NotEmpty(t, f.Groups)
	return f
}

func ruleQueries(t *testing.T) []query {
	t.Helper()
	var out []query
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			out = append(out, query{where: "alerts.yaml " + r.Alert + r.Record, text: r.Expr})
		}
	}
	return out
}

// grafanaVars are the values Grafana's template variables stand for when a
// query is parsed; a variable not listed here fails the test.
var grafanaVars = map[string]string{
	"__rate_interval": "5m",
	"__interval":      "1m",
	"__range":         "1h",
	"namespace":       "telemetry",
}

var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// expandPromQL replaces Grafana's variables with values; label_values(m, l)
// variable queries become the selector m.
func expandPromQL(q query) (string, error) {
	var unknown []string
	s := grafanaVar.ReplaceAllStringFunc(q.text, func(v string) string {
		m := grafanaVar.FindStringSubmatch(v)
		name := m[1] + m[2]
		val, ok := grafanaVars[name]
		if !ok {
			unknown = append(unknown, name)
		}
		return val
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("%s: unknown Grafana variables %v", q.where, unknown)
	}
	if inner, ok := strings.CutPrefix(s, "label_values("); ok {
		sel, _, found := strings.Cut(inner, ",")
		if !found {
			return "", fmt.Errorf("%s: label_values without a label: %q", q.where, q.text)
		}
		s = strings.TrimSpace(sel)
	}
	return s, nil
}

// metricNames parses expr with Prometheus' parser and returns the metric
// names its selectors name.
func metricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				err = fmt.Errorf("selector %s names no metric", vs)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	slices.Sort(names)
	return slices.Compact(names), err
}

// promQueries is every PromQL expression the operators get, expanded.
func promQueries(t *testing.T) []query {
	t.Helper()
	var out []query
	for _, q := range append(dashboardQueries(t, promType), ruleQueries(t)...) {
		s, err := expandPromQL(q)
		require.NoError(t, err)
		out = append(out, query{where: q.where, text: s})
	}
	return out
}

// TestEveryPromQLExpressionParses: dashboards' targets and variables and the
// alert rules, with Prometheus' parser; each names at least one metric.
func TestEveryPromQLExpressionParses(t *testing.T) {
	t.Parallel()
	qs := promQueries(t)
	require.Greater(t, len(qs), 30)
	for _, q := range qs {
		names, err := metricNames(q.text)
		require.NoError(t, err, "%s: %s", q.where, q.text)
		require.NotEmpty(t, names, "%s names no metric: %s", q.where, q.text)
	}
	// The parser is not lenient: a broken expression fails.
	for _, bad := range []string{`sum(rate(x[5m])`, `rate(x)`, `x{a=~"("}`, `histogram_quantile(0.9, sum by (le) x)`} {
		_, err := metricNames(bad)
		require.Error(t, err, bad)
	}
}

// TestExpandPromQL: Grafana's variables become values; one it does not
// know fails rather than parse by luck.
func TestExpandPromQL(t *testing.T) {
	t.Parallel()
	got, err := expandPromQL(query{text: `sum(rate(x{namespace=~"$namespace"}[$__rate_interval])) / ${__range}`})
	require.NoError(t, err)
	require.Equal(t, `sum(rate(x{namespace=~"telemetry"}[5m])) / 1h`, got)
	got, err = expandPromQL(query{text: `label_values(mqwriter_messages_published_total, namespace)`})
	require.NoError(t, err)
	require.Equal(t, "mqwriter_messages_published_total", got)
	_, err = expandPromQL(query{where: "w", text: `x{pod="$pod"}`})
	require.ErrorContains(t, err, "pod")
}
