package monitoring_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	sigsyaml "sigs.k8s.io/yaml"
)

const runbookBase = "https://github.com/gpufleet/telemetry/blob/main/README.md#"

// TestAlertsAreDocumentedAndLabelled: each alert has a known severity, a
// summary, a description and a runbook link whose anchor exists in the
// README; names are unique; `for` parses.
func TestAlertsAreDocumentedAndLabelled(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(repoPath(t, "README.md"))
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "group %s holds only alerts", g.Name)
			require.False(t, seen[r.Alert], "duplicate alert %s", r.Alert)
			seen[r.Alert] = true
			require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], r.Alert)
			if r.For != "" {
				_, err := model.ParseDuration(r.For)
				require.NoError(t, err, r.Alert)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				require.NotEmpty(t, strings.TrimSpace(r.Annotations[a]), "%s: annotation %s", r.Alert, a)
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookBase)
			require.True(t, ok, "%s: runbook_url points into the README", r.Alert)
			require.Equal(t, "alert-"+strings.ToLower(r.Alert), anchor, r.Alert)
			require.True(t, strings.Contains(string(readme), `id="`+anchor+`"`), "%s: README has no anchor %s", r.Alert, anchor)
		}
	}
	require.Len(t, seen, 8)
}

// alertTests is deployments/prometheus/alerts_test.yaml (promtool's format),
// read for coverage only: promtool runs it (make test-alerts).
type alertTests struct {
	RuleFiles          []string `json:"rule_files"`
	EvaluationInterval string   `json:"evaluation_interval"`
	Tests              []struct {
		Name           string `json:"name"`
		Interval       string `json:"interval"`
		InputSeries    []any  `json:"input_series"`
		AlertRuleTests []struct {
			EvalTime  string `json:"eval_time"`
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

// TestEveryAlertHasAFiringAndAQuietUnitTest: the promtool tests cover each
// alert both ways, at an evaluation time after the alert's `for`.
func TestEveryAlertHasAFiringAndAQuietUnitTest(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(repoPath(t, "deployments", "prometheus", "alerts_test.yaml"))
	require.NoError(t, err)
	var f alertTests
	require.NoError(t, sigsyaml.UnmarshalStrict(b, &f))
	require.Equal(t, []string{"alerts.yaml"}, f.RuleFiles)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, at := range tc.AlertRuleTests {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				quiet[at.Alertname] = true
			}
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			require.True(t, fires[r.Alert], "%s: no promtool test where it fires", r.Alert)
			require.True(t, quiet[r.Alert], "%s: no promtool test where it stays quiet", r.Alert)
		}
	}
}

// TestReadmeRunbookListsEveryAlert: the runbook table names exactly the
// alerts of the rules file.
func TestReadmeRunbookListsEveryAlert(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(repoPath(t, "README.md"))
	require.NoError(t, err)
	var inReadme []string
	for _, m := range regexp.MustCompile(`id="alert-([a-z0-9]+)"`).FindAllStringSubmatch(string(readme), -1) {
		inReadme = append(inReadme, m[1])
	}
	var inRules []string
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			inRules = append(inRules, strings.ToLower(r.Alert))
		}
	}
	require.ElementsMatch(t, inRules, inReadme)
}
