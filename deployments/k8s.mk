# Kubernetes and Docker targets, included by the top-level Makefile.
#
# helm comes from the tools module (tools/go.mod, `tool` directive): built by
# the go command on first use (about 90 s cold, minutes on a busy 2-core
# machine), cached afterwards. Paths are absolute because `go -C tools`
# runs helm from tools/.

GO         ?= go
HELM       ?= $(GO) -C $(CURDIR)/tools tool helm
CHARTS_DIR := $(CURDIR)/deployments/helm
UMBRELLA   := $(CHARTS_DIR)/telemetry-pipeline
CHARTS     := telemetry-lib mqwriter mqreader collector streamer apigw partition-controller telemetry-pipeline
K8S_NS     ?= telemetry
COMPOSE    ?= docker compose -f deployments/docker-compose.yaml
# The queue tokens of the compose stack: generated once, kept in .local.

# helm prints a note for every symlink it follows (charts/ and the streamer's
# CSV); hide those, keep everything else and the exit status.
define quiet_helm
( out=$$($(HELM) $(1) 2>&1); rc=$$?; printf '%s\n' "$$out" | grep -v 'found symbolic link in path' | grep -v '^$$'; exit $$rc )
endef

.PHONY: helm helm-lint helm-template test-deploy test-k8s up down

helm: ## build (or reuse) helm from the tools module and print its version
	@$(HELM) version

helm-lint: ## lint every chart, render the umbrella (default, everything on, KEDA), package it, strict-decode the manifests, check lookup-kept Secrets, Dockerfile and compose
	@for c in $(CHARTS); do $(call quiet_helm,lint --strict $(CHARTS_DIR)/$$c) || exit 1; done
	@for v in $(UMBRELLA)/ci/*-values.yaml; do $(call quiet_helm,lint --strict $(UMBRELLA) -f $$v) || exit 1; done
	@$(call quiet_helm,template tp $(UMBRELLA) -n $(K8S_NS)) >/dev/null
	@for v in $(UMBRELLA)/ci/*-values.yaml; do $(call quiet_helm,template tp $(UMBRELLA) -n $(K8S_NS) -f $$v) >/dev/null || exit 1; done
	@mkdir -p .local/helm && $(call quiet_helm,package -d $(CURDIR)/.local/helm $(UMBRELLA))
	@tar -tzf .local/helm/telemetry-pipeline-*.tgz | grep -q 'charts/streamer/files/dcgm.csv' || { echo "packaged chart lacks the streamer CSV (symlink not followed)"; exit 1; }
	@$(call with_devdb,$(GO) test -count=1 ./test/k8s/)
	$(GO) -C tools test -count=1 ./helmlookup/
	$(GO) -C tools/deploytest test -count=1 ./...

helm-template: ## render the umbrella chart to stdout (VALUES=file to add values)
	@$(call quiet_helm,template tp $(UMBRELLA) -n $(K8S_NS) $(if $(VALUES),-f $(abspath $(VALUES))))

test-deploy: ## Dockerfile lint (BuildKit's checks) and compose validation (compose-go), offline
	$(GO) -C tools/deploytest test -count=1 ./...

# test-k8s runs the charts and the partition controller against a real
# etcd + kube-apiserver + kube-controller-manager built from source through
# the Go module proxy (tools/k8senv), cached in ~/.cache/gpufleet-k8s: about
# 16 min to build the first time, then about 40 s a run. Run builds niced.
test-k8s: ## end-to-end against a real API server built from source (slow first build)
	nice -n 19 $(GO) -C tools/k8senv run . -repo $(CURDIR)

COMPOSE_TOKENS := .local/run/compose-tokens.env

up: ## docker compose: build the image and start the whole stack (needs Docker); queue tokens in .local/run/compose-tokens.env
	@mkdir -p $(dir $(COMPOSE_TOKENS)) && [ -s $(COMPOSE_TOKENS) ] || ( umask 077; \
	  tok() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }; \
	  printf 'MQ_PUBLISH_TOKEN=%s\nMQ_CONSUME_TOKEN=%s\n' "$$(tok)" "$$(tok)" > $(COMPOSE_TOKENS) )
	$(COMPOSE) --env-file $(COMPOSE_TOKENS) up -d --build

down: ## docker compose: stop the stack and drop its volumes
	$(COMPOSE) $(if $(wildcard $(COMPOSE_TOKENS)),--env-file $(COMPOSE_TOKENS)) down -v
