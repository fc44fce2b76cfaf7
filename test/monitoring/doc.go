// Package monitoring tests what operators import: the Grafana dashboards in
// deployments/grafana and the alert rules in deployments/prometheus.
//
//   - Every dashboard decodes strictly against Grafana's dashboard schema
//     (github.com/grafana/grafana-foundation-sdk: unknown fields, wrong
//     types and missing required fields fail), with every panel's options
//     checked by its panel plugin's schema and every Prometheus query by the
//     Prometheus data source's; PostgreSQL queries, which the SDK has no
//     schema for, are checked field by field here.
//   - Every PromQL expression (dashboard targets, variable queries, alert
//     rules) parses with Prometheus' own parser, and every metric it names
//     is exported by some app: the apps are built and run against a real
//     PostgreSQL, fed a slice of the shipped CSV, and their /metrics scraped.
//   - Every SQL query of the GPU dashboard runs against the migrated schema
//     with rolled-up data and returns rows.
//   - Every alert has a severity, summary, description and a runbook link to
//     an anchor that exists in the README, and alerts_test.yaml holds a case
//     where it fires and one where it does not (promtool runs those: make
//     test-alerts).
package monitoring
