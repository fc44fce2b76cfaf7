package monitoring_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/stretchr/testify/require"
)

// TestDashboardsDecodeAgainstGrafanaSchema decodes each dashboard with the
// Grafana Foundation SDK's strict decoder (generated from Grafana's
// dashboard schema and its panel and data source plugins' schemas) and
// validates it, then checks what the SDK leaves open: data sources come
// from the dashboard's own variables, PostgreSQL targets hold only the
// fields Grafana's SQL editor writes, panel ids are unique and panels fit
// the 24-column grid.
func TestDashboardsDecodeAgainstGrafanaSchema(t *testing.T) {
	t.Parallel()
	plugins.RegisterDefaultPlugins()
	files := dashboardFiles(t)
	require.Len(t, files, 2)
	for name, b := range files {
		t.Run(name, func(t *testing.T) {
			var d dashboard.Dashboard
			require.NoError(t, buildErr(d.UnmarshalJSONStrict(b)))
			require.NoError(t, buildErr(d.Validate()))
			require.NotNil(t, d.Uid)
			require.NotEmpty(t, *d.Title)

			dsVars := map[string]string{} // "${name}" → plugin type
			for _, v := range d.Templating.List {
				if v.Type == "datasource" {
					require.NotNil(t, v.Query)
					require.NotNil(t, v.Query.String, "datasource variable %s: plugin type", v.Name)
					dsVars["${"+v.Name+"}"] = *v.Query.String
				}
			}
			require.NotEmpty(t, dsVars, "a dashboard picks its data source through a variable")

			// The SDK's PanelOrRowPanel drops a panel whose strict decode
			// returned its empty error list (v0.0.22), so the panels are
			// decoded one by one for the checks below; their errors were
			// already reported by the whole dashboard's decode.
			var top struct {
				Panels []json.RawMessage `json:"panels"`
			}
			require.NoError(t, json.Unmarshal(b, &top))
			var panels []decodedPanel
			ids := map[uint32]bool{}
			for _, raw := range top.Panels {
				var kind struct {
					Type string `json:"type"`
				}
				require.NoError(t, json.Unmarshal(raw, &kind))
				if kind.Type == "row" {
					var r dashboard.RowPanel
					require.NoError(t, buildErr(r.UnmarshalJSONStrict(raw)))
					require.NoError(t, buildErr(r.Validate()))
					require.False(t, ids[r.Id], "duplicate panel id %d", r.Id)
					ids[r.Id] = true
					require.Empty(t, r.Panels, "rows are expanded: their panels follow them")
					continue
				}
				var p dashboard.Panel
				require.NoError(t, buildErr(p.UnmarshalJSONStrict(raw)))
				require.NoError(t, buildErr(p.Validate()))
				var tg struct {
					Targets []json.RawMessage `json:"targets"`
				}
				require.NoError(t, json.Unmarshal(raw, &tg))
				panels = append(panels, decodedPanel{Panel: p, targets: tg.Targets})
			}
			require.Len(t, panels, len(d.Panels)-countRows(top.Panels))
			var targets int
			for _, p := range panels {
				title := *p.Title
				require.NotNil(t, p.Id, title)
				require.False(t, ids[*p.Id], "duplicate panel id %d", *p.Id)
				ids[*p.Id] = true
				require.NotNil(t, p.GridPos, title)
				require.LessOrEqual(t, p.GridPos.X+p.GridPos.W, uint32(24), "%s: wider than the grid", title)
				require.NotNil(t, p.Description, "%s: panels say what they show", title)
				require.NotNil(t, p.Datasource, title)
				dsType, ok := dsVars[*p.Datasource.Uid]
				require.True(t, ok, "%s: data source %q is not one of the dashboard's variables %v", title, *p.Datasource.Uid, dsVars)
				require.Equal(t, dsType, *p.Datasource.Type, title)
				require.NotEmpty(t, p.targets, title)
				for _, q := range p.targets {
					targets++
					requireTarget(t, title, dsType, q)
				}
			}
			require.Greater(t, targets, 10)
		})
	}
}

func countRows(panels []json.RawMessage) int {
	n := 0
	for _, raw := range panels {
		var kind struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(raw, &kind) == nil && kind.Type == "row" {
			n++
		}
	}
	return n
}

// decodedPanel is a panel with its targets' JSON: the SDK's Panel decoder
// drops every target (v0.0.22: StrictUnmarshalDataquery's empty error list
// counts as an error), so requireTarget decodes them itself.
type decodedPanel struct {
	dashboard.Panel
	targets []json.RawMessage
}

// buildErr turns the SDK's empty error list (a nil cog.BuildErrors in a
// non-nil error interface) into nil.
func buildErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// requireTarget checks one query against its data source's schema: the
// SDK's for Prometheus; for PostgreSQL, which the SDK has none for, the
// fields Grafana's SQL editor writes, nothing else.
func requireTarget(t *testing.T, title, dsType string, raw json.RawMessage) {
	t.Helper()
	switch dsType {
	case promType:
		var pq prometheus.Dataquery
		require.NoError(t, buildErr(pq.UnmarshalJSONStrict(raw)), title)
		require.NoError(t, buildErr(pq.Validate()), title)
		require.NotEmpty(t, pq.Expr, title)
		require.NotNil(t, pq.RefId, title)
	case postgresType:
		var fields map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(raw, &fields))
		allowed := []string{"refId", "datasource", "rawSql", "format", "rawQuery", "editorMode"}
		for k := range fields {
			require.Contains(t, allowed, k, "%s: unknown PostgreSQL query field", title)
		}
		var sq struct {
			RefID      string `json:"refId"`
			RawSQL     string `json:"rawSql"`
			Format     string `json:"format"`
			RawQuery   bool   `json:"rawQuery"`
			EditorMode string `json:"editorMode"`
		}
		require.NoError(t, json.Unmarshal(raw, &sq))
		require.NotEmpty(t, sq.RefID, title)
		require.NotEmpty(t, sq.RawSQL, title)
		require.True(t, slices.Contains([]string{"time_series", "table"}, sq.Format), "%s: format %q", title, sq.Format)
		require.True(t, sq.RawQuery, "%s: raw SQL needs rawQuery", title)
		require.Equal(t, "code", sq.EditorMode, title)
	default:
		t.Fatalf("%s: unexpected data source type %q", title, dsType)
	}
}

// TestDashboardDecoderIsStrict: the schema check fails on the mistakes it
// is there for, each made in a copy of a shipped dashboard.
func TestDashboardDecoderIsStrict(t *testing.T) {
	t.Parallel()
	plugins.RegisterDefaultPlugins()
	b := dashboardFiles(t)["pipeline-health.json"]
	tests := []struct{ name, old, new, want string }{
		{"unknown field in a Prometheus query", `"legendFormat": "persisted"`, `"legendFormat": "persisted", "exprr": "up"`, "unexpected field 'exprr'"},
		{"unknown panel option", `"tooltip": {`, `"tooltips": {}, "tooltip": {`, "unexpected field 'tooltips'"},
		{"wrong type", `"graphTooltip": 1`, `"graphTooltip": "shared"`, "graphTooltip"},
		{"missing required field", "\"legend\": {\n          \"displayMode\": \"list\",\n          \"placement\": \"bottom\",\n          \"showLegend\": true,\n          \"calcs\": []\n        },", "", "legend: required field is missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := string(b)
			require.Contains(t, s, tc.old)
			var d dashboard.Dashboard
			err := buildErr(d.UnmarshalJSONStrict([]byte(strings.Replace(s, tc.old, tc.new, 1))))
			require.ErrorContains(t, err, tc.want)
		})
	}
}
