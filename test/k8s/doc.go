// Package k8s holds the tests of the Kubernetes deployment: they render the
// Helm charts in deployments/helm with helm built from the tools module
// (go -C tools tool helm; $HELM overrides), decode every rendered object
// strictly with the Kubernetes API types (unknown fields, duplicate keys,
// wrong types and unknown kinds fail), and check the invariants the
// pipeline relies on: probes, resources and ports of every workload, HPAs
// aimed at existing workloads, the initial partition assignment equal to
// the controller's, the controller's Role equal to what it does, the
// streamer's CSV ConfigMaps reassembling the shipped file under the object
// size limit. `make helm-lint` runs them after helm lint; `make test` runs
// them too (helm is cached by then).
package k8s
