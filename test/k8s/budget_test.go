package k8s_test

import (
	"math"
	"os"
	"sort"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// budgetLine is one app's share of the connection budget.
type budgetLine struct {
	app                string
	maxReplicas, conns int
}

// connectionBudget reads, from a rendered umbrella chart, every workload
// that connects to PostgreSQL (it has DATABASE_URL): its replica ceiling
// (the HPA's maxReplicas, else its replicas) and its pool size
// (DB_MAX_CONNS), and returns the lines and their sum at maximum scale.
func connectionBudget(t *testing.T, r release) ([]budgetLine, int) {
	t.Helper()
	maxOf := map[string]int{}
	for _, h := range typed[autoscalingv2.HorizontalPodAutoscaler](r) {
		maxOf[h.Spec.ScaleTargetRef.Name] = int(h.Spec.MaxReplicas)
	}
	var lines []budgetLine
	total := 0
	for _, w := range workloads(r) {
		c := w.template.Spec.Containers[0]
		if _, ok := envVar(c, "DATABASE_URL"); !ok {
			continue
		}
		conns, err := strconv.Atoi(envOf(t, r, c)["DB_MAX_CONNS"])
		require.NoError(t, err, "%s: DB_MAX_CONNS must be set explicitly (its pool is part of the budget)", w.name)
		n, ok := maxOf[w.name]
		if !ok {
			n = int(w.replicas)
		}
		lines = append(lines, budgetLine{w.name, n, conns})
		total += n * conns
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i].app < lines[j].app })
	return lines, total
}

// clusterLimits reads max_connections and the chart's reserve and share.
func clusterLimits(t *testing.T, r release) (maxConns, reserved int, share float64) {
	t.Helper()
	c := one[cnpgCluster](r, "tp-pg")
	require.NotNil(t, c, "the budget is checked against the chart's own cluster")
	maxConns, err := strconv.Atoi(c.Spec.PostgreSQL.Parameters["max_connections"])
	require.NoError(t, err)
	vals := struct {
		Database struct {
			CNPG struct {
				ReservedConnections int     `json:"reservedConnections"`
				BudgetShare         float64 `json:"budgetShare"`
			} `json:"cnpg"`
		} `json:"database"`
	}{}
	b, err := os.ReadFile(repoPath(t, "deployments", "helm", "telemetry-pipeline", "values.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &vals))
	return maxConns, vals.Database.CNPG.ReservedConnections, vals.Database.CNPG.BudgetShare
}

// atMaxScale renders the umbrella with CloudNativePG and every HPA on
// (apigw's too), connecting directly to the -rw service.
var atMaxScale = []string{"--set", "global.database.mode=cnpg", "--set", "apigw.autoscaling.enabled=true",
	"--set", "mqwriter.autoscaling.enabled=true", "--set", "mqreader.autoscaling.enabled=true",
	"--set", "collector.autoscaling.enabled=true"}

// TestConnectionBudgetFitsAtMaxReplicas: every app at its HPA's
// maxReplicas, each pod with a full pool, plus the reserved connections,
// stays under max_connections with the chart's headroom; a pool size from
// before the budget (16 per pod) would not.
func TestConnectionBudgetFitsAtMaxReplicas(t *testing.T) {
	t.Parallel()
	r := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline", atMaxScale...))}
	maxConns, reserved, share := clusterLimits(t, r)
	require.Positive(t, reserved)
	require.True(t, share > 0 && share < 1, "budgetShare leaves headroom")
	lines, total := connectionBudget(t, r)
	require.Len(t, lines, 4, "apigw, collector, mqreader, mqwriter connect to PostgreSQL")
	for _, l := range lines {
		t.Logf("%-10s %3d pods x %2d connections = %3d", l.app, l.maxReplicas, l.conns, l.maxReplicas*l.conns)
	}
	limit := int(math.Floor(float64(maxConns-reserved) * share))
	t.Logf("total %d of %d allowed (max_connections %d, %d reserved, share %.2f)", total, limit, maxConns, reserved, share)
	require.LessOrEqual(t, total, limit, "the apps at maximum scale exceed the connection budget")

	// The check bites: the old uniform pool of 16 did not fit.
	old := append([]string{}, atMaxScale...)
	for _, app := range []string{"apigw", "collector", "mqreader", "mqwriter"} {
		old = append(old, "--set-string", app+".config.DB_MAX_CONNS=16")
	}
	_, before := connectionBudget(t, release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline", old...))})
	require.Greater(t, before, maxConns, "16 per pod at maxReplicas: %d connections", before)
}

// TestPoolerBudget: through the Pooler the server sees at most instances ×
// default_pool_size connections, whatever the number of pods.
func TestPoolerBudget(t *testing.T) {
	t.Parallel()
	args := append([]string{"--set", "global.database.pooler=true"}, atMaxScale...)
	r := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline", args...))}
	p := one[cnpgPooler](r, "tp-pg-pooler-rw")
	require.NotNil(t, p)
	require.Equal(t, "transaction", p.Spec.PgBouncer.PoolMode)
	require.Equal(t, "rw", p.Spec.Type)
	pool, err := strconv.Atoi(p.Spec.PgBouncer.Parameters["default_pool_size"])
	require.NoError(t, err)
	maxConns, reserved, share := clusterLimits(t, r)
	require.LessOrEqual(t, p.Spec.Instances*pool, int(float64(maxConns-reserved)*share))
	require.NotEqual(t, "0", p.Spec.PgBouncer.Parameters["max_prepared_statements"], "pgx's statement cache needs it")
	for _, w := range workloads(r) {
		c := w.template.Spec.Containers[0]
		if u, ok := envVar(c, "DATABASE_URL"); ok {
			if u.ValueFrom != nil { // the app's own role (global.database.roles): its Secret's uri
				sec := one[corev1.Secret](r, u.ValueFrom.SecretKeyRef.Name)
				require.NotNil(t, sec, w.name)
				require.Contains(t, string(sec.Data[u.ValueFrom.SecretKeyRef.Key]), "@tp-pg-pooler-rw.", w.name)
			} else {
				require.Equal(t, "postgres://tp-pg-pooler-rw:5432", u.Value, w.name)
			}
			require.Equal(t, "false", envOf(t, r, c)["MIGRATE_ON_START"], "%s: no advisory locks through PgBouncer", w.name)
		}
	}
	require.NotEmpty(t, typed[appsv1.StatefulSet](r), "the readers are among the checked workloads")
}

// TestSynchronousReplicationByDefault: the chart's cluster waits for a
// standby on every commit unless told otherwise; apigw reads from the
// replicas with the primary as fallback.
func TestSynchronousReplicationByDefault(t *testing.T) {
	t.Parallel()
	r := release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline", "--set", "global.database.mode=cnpg"))}
	c := one[cnpgCluster](r, "tp-pg")
	require.NotNil(t, c)
	s := c.Spec.PostgreSQL.Synchronous
	require.NotNil(t, s)
	require.Equal(t, 1, s.Number)
	require.Equal(t, "required", s.DataDurability)
	require.Greater(t, c.Spec.Instances, s.Number, "a standby to spare")
	for _, w := range workloads(r) {
		u, ok := envVar(w.template.Spec.Containers[0], "DATABASE_READ_URL")
		if w.name == "apigw" {
			require.True(t, ok)
			require.Equal(t, "postgres://tp-pg-ro:5432,tp-pg-rw:5432?target_session_attrs=prefer-standby", u.Value)
		} else {
			require.False(t, ok, w.name)
		}
	}

	r = release{name: "tp", objs: decodeAll(t, template(t, "telemetry-pipeline", "--set", "global.database.mode=cnpg",
		"--set", "database.cnpg.synchronous.enabled=false"))}
	require.Nil(t, one[cnpgCluster](r, "tp-pg").Spec.PostgreSQL.Synchronous, "asynchronous when switched off")
}
